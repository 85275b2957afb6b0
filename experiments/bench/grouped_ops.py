"""Benchmark: the grouped edge ops' batch norm, depthwise and pointwise convolutions, by backend.

The calls are the ones a DARTS CIFAR supernet (C=16, 8 cells, 32x32, ``group_edges``) makes to
``op_kernels.batch_norm``, ``op_kernels.depthwise_conv2d`` or ``op_kernels.pointwise_conv2d`` in
one training forward pass at the given batch, recorded with how often each call shape occurs.
For each shape this times forward+backward with each backend of the op (batch norm and depthwise:
PyTorch's kernels vs the Triton ones; pointwise: ``F.conv2d`` vs the batched matrix product;
median of many runs, CUDA events) and reports the byte floor at the measured copy bandwidth:
batch norm reads x and writes y, reads x and dy and writes dx; a convolution reads x and writes
y, reads dy and writes dx, reads x and dy for the weight gradient. The per-pass total weighs
each shape by its count; a search step runs the supernet twice (arch step and weight step), so
it pays about twice that. Last, one forward+backward of the whole supernet with each backend.

    python experiments/bench/grouped_ops.py --device cuda [--op batch_norm|depthwise|pointwise]
        [--batch 64] [--dtype float32|bfloat16]

Writes experiments/bench/results/grouped_ops_<op>_<device>_<dtype>.json. On CPU the Triton
kernels run only through the interpreter, which is not a speed measurement: CPU runs time
PyTorch's backends only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mixed_op import copy_bandwidth, supernet_step, timer  # noqa: E402
from search_step import environment  # noqa: E402

from supernet import grouped_edges  # noqa: E402
from supernet.kernels.op_kernels import pointwise_conv2d  # noqa: E402
from supernet.spaces.darts import DartsSpace  # noqa: E402

# A recorded call: the input shape and what else fixes the work (BN: affine, running statistics;
# depthwise: kernel size, stride, padding, dilation).
Call = tuple[tuple[int, ...], tuple]


def _square(v) -> int:
    return v if isinstance(v, int) else v[0]


@dataclass(frozen=True)
class GroupedOp:
    key: str  # the search_space config key
    attr: str  # the function grouped_edges calls
    call: Callable[..., Call]  # its arguments -> the recorded call
    passes: tuple[int, int]  # tensor passes of forward+backward over the input, over the output
    backends: tuple[str, str]  # the baseline, the candidate
    cpu_backends: tuple[str, ...]  # those that are a speed measurement on the CPU


OPS = {
    "batch_norm": GroupedOp(
        "batch_norm_kernel",
        "batch_norm",
        lambda x, rm, rv, w, b, *_: (tuple(x.shape), (w is not None, rm is not None)),
        (3, 2),
        ("torch", "triton"),
        ("torch",),
    ),
    "depthwise": GroupedOp(
        "depthwise_kernel",
        "depthwise_conv2d",
        lambda x, w, s, p, d, *_: (tuple(x.shape), (w.shape[-1], *map(_square, (s, p, d)))),
        (3, 3),
        ("torch", "triton"),
        ("torch",),
    ),
    "pointwise": GroupedOp(
        "pointwise_kernel",
        "pointwise_conv2d",
        lambda x, w, s, g, *_: (tuple(x.shape), (w.shape[0], _square(s), g)),
        (3, 3),
        ("conv", "matmul"),
        ("conv", "matmul"),
    ),
}


def recorded_calls(op: str, batch: int, device: str) -> Counter[Call]:
    """The grouped ``op`` calls of one training forward pass: call -> count."""
    torch.manual_seed(0)
    net = DartsSpace((3, 32, 32), 10).build_supernet().to(device).train()
    attr, key = OPS[op].attr, OPS[op].call
    original = getattr(grouped_edges, attr)
    seen: Counter[Call] = Counter()

    def spy(*args):
        seen[key(*args)] += 1
        return original(*args)

    x = torch.randn(batch, 3, 32, 32, device=device)
    weights = {k: torch.full((14, 8), 1 / 8, device=device) for k in ("normal", "reduce")}
    with mock.patch.object(grouped_edges, attr, spy), torch.no_grad():
        net(x, weights)
    return seen


def fwd_bwd(op: str, backend: str, call: Call, dtype: torch.dtype, device: str):
    """A closure running forward+backward of one recorded call with ``backend``."""
    shape, rest = call
    C = shape[1]
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    if op == "batch_norm":
        affine, running = rest
        w = torch.ones(C, device=device, requires_grad=True) if affine else None
        b = torch.zeros(C, device=device, requires_grad=True) if affine else None
        rm = torch.zeros(C, device=device) if running else None
        rv = torch.ones(C, device=device) if running else None
        if backend == "triton":
            from supernet.kernels.triton_batch_norm import triton_batch_norm

            def forward():
                return triton_batch_norm(x, rm, rv, w, b, 0.1, 1e-5)
        else:

            def forward():
                return F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5)
    elif op == "pointwise":
        out, stride, groups = rest
        w = torch.randn(out, C // groups, 1, 1, device=device, dtype=dtype, requires_grad=True)

        def forward():
            return pointwise_conv2d(x, w, stride, groups, backend)
    else:
        K, stride, padding, dilation = rest
        w = torch.randn(C, 1, K, K, device=device, dtype=dtype, requires_grad=True)
        if backend == "triton":
            from supernet.kernels.triton_depthwise import triton_depthwise_conv

            def forward():
                return triton_depthwise_conv(x, w, stride, padding, dilation)
        else:

            def forward():
                return F.conv2d(x, w, None, stride, padding, dilation, C)

    dy = torch.randn_like(forward())

    def run():
        torch.autograd.backward(forward(), dy)

    return run, dy.numel()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--op", default="batch_norm", choices=sorted(OPS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    device, dtype, op = args.device, getattr(torch, args.dtype), args.op
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("Unset TRITON_INTERPRET: interpreted kernels are not a speed measurement.")
    load_before = os.getloadavg()[0]
    spec = OPS[op]
    backends = list(spec.backends if device == "cuda" else spec.cpu_backends)
    key_name = spec.key
    compared = len(backends) == 2  # a speedup column: baseline time / candidate time
    reps = args.reps if device == "cuda" else 3
    bw = copy_bandwidth(device)
    rows = []
    for call, count in sorted(recorded_calls(op, args.batch, device).items()):
        row = {"shape": list(call[0]), "params": list(call[1]), "calls": count}
        for b in backends:
            run, out_numel = fwd_bwd(op, b, call, dtype, device)
            row[f"{b}_s"] = timer(run, device, reps)
        in_passes, out_passes = spec.passes
        row["floor_bytes"] = (
            in_passes * math.prod(call[0]) + out_passes * out_numel
        ) * dtype.itemsize
        if bw:
            row["floor_s"] = row["floor_bytes"] / bw
        if compared:
            row["speedup"] = row[f"{backends[0]}_s"] / row[f"{backends[1]}_s"]
        rows.append(row)
    per_pass = {b: sum(r[f"{b}_s"] * r["calls"] for r in rows) for b in backends}
    floor_pass = sum(r.get("floor_s", 0.0) * r["calls"] for r in rows)
    supernet_rows = [
        supernet_step(
            f"supernet fwd+bwd, {key_name}={b}", args.batch, dtype, device,
            reps=10 if device == "cuda" else 1, **{key_name: b},
        )
        for b in backends
    ]  # fmt: skip

    meta = environment(device, load_before)
    print(
        f"\ngrouped {op} calls of one supernet forward pass, batch {args.batch}, {args.dtype}, "
        f"{meta['device_name']}" + (f", copy bandwidth {bw / 1e9:.0f} GB/s" if bw else "")
    )
    head = f"{'shape':<18}{'params':<14}{'calls':>6}" + "".join(
        f"{b + ' us':>11}" for b in backends
    )
    print(head + (f"{'floor us':>10}{'speedup':>9}" if compared else ""))
    for r in rows:
        line = f"{'x'.join(map(str, r['shape'])):<18}{str(r['params']):<14}{r['calls']:>6}"
        line += "".join(f"{r[f'{b}_s'] * 1e6:>11.1f}" for b in backends)
        if compared:
            floor = f"{r['floor_s'] * 1e6:.1f}" if "floor_s" in r else "-"
            line += f"{floor:>10}{r['speedup']:>9.2f}"
        print(line)
    print(
        f"per forward+backward pass ({sum(r['calls'] for r in rows)} calls): "
        + ", ".join(f"{b} {t * 1e3:.2f} ms" for b, t in per_pass.items())
        + (f", floor {floor_pass * 1e3:.2f} ms" if bw else "")
    )
    for s in supernet_rows:
        peak = f", peak {s['peak_mib']:.0f} MiB" if s["peak_mib"] else ""
        print(f"{s['what']}: {s['seconds'] * 1e3:.1f} ms{peak}")
    out = Path(args.out or HERE / "results" / f"grouped_ops_{op}_{device}_{args.dtype}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta.update(
        benchmark="grouped_ops",
        command=" ".join(["python experiments/bench/grouped_ops.py", *sys.argv[1:]]),
    )
    out.write_text(json.dumps({
        "meta": meta, "op": op, "batch": args.batch, "dtype": args.dtype,
        "copy_bandwidth_Bps": bw, "shapes": rows, "per_pass_s": per_pass,
        "floor_per_pass_s": floor_pass, "supernet_fwd_bwd": supernet_rows,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
