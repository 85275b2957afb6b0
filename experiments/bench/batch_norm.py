"""Benchmark: the grouped edge ops' batch norm, Triton split reductions vs PyTorch's kernels.

The shapes are the ones a DARTS CIFAR supernet (C=16, 8 cells, 32x32, ``group_edges``) hands
``op_kernels.batch_norm`` in one training forward pass at the given batch, recorded, with how often
each occurs. For each shape this times forward+backward of that batch norm (median of many runs,
CUDA events) with ``F.batch_norm`` and with ``triton_batch_norm``, and reports the byte floor
(read x, write y; read x and dy, write dx: 5 tensor passes) at the measured copy bandwidth.
The per-step total weighs each shape by its count; a search step runs the supernet twice
(arch step and weight step), so it pays about twice that. Last, one forward+backward of the
whole supernet with either ``search_space.batch_norm_kernel``.

    python experiments/bench/batch_norm.py --device cuda [--batch 64] [--dtype float32|bfloat16]

Writes experiments/bench/results/batch_norm_<device>_<dtype>.json. On CPU the Triton kernel
runs only through the interpreter, which is not a speed measurement: CPU runs time PyTorch only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
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
from supernet.spaces.darts import DartsSpace  # noqa: E402

Shape = tuple[tuple[int, ...], bool, bool]  # (x shape, affine, running statistics)


def supernet(batch_norm_kernel: str, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    space = DartsSpace((3, 32, 32), 10, batch_norm_kernel=batch_norm_kernel)
    return space.build_supernet().to(device).train()


def recorded_shapes(batch: int, device: str) -> Counter[Shape]:
    """The grouped batch norms of one training forward pass: shape -> calls."""
    net = supernet("torch", device)
    seen: Counter[Shape] = Counter()
    original = grouped_edges.batch_norm

    def spy(x, running_mean, running_var, weight, bias, momentum, eps, backend="torch"):
        seen[(tuple(x.shape), weight is not None, running_mean is not None)] += 1
        return original(x, running_mean, running_var, weight, bias, momentum, eps, backend)

    x = torch.randn(batch, 3, 32, 32, device=device)
    weights = {k: torch.full((14, 8), 1 / 8, device=device) for k in ("normal", "reduce")}
    with mock.patch.object(grouped_edges, "batch_norm", spy), torch.no_grad():
        net(x, weights)
    return seen


def fwd_bwd(norm, shape: Shape, dtype: torch.dtype, device: str):
    size, affine, running = shape
    C = size[1]
    x = torch.randn(size, device=device, dtype=dtype, requires_grad=True)
    dy = torch.randn(size, device=device, dtype=dtype)
    w = torch.ones(C, device=device, requires_grad=True) if affine else None
    b = torch.zeros(C, device=device, requires_grad=True) if affine else None
    rm = torch.zeros(C, device=device) if running else None
    rv = torch.ones(C, device=device) if running else None

    def run():
        y = norm(x, rm, rv, w, b, 0.1, 1e-5)
        torch.autograd.backward(y, dy)

    return run


def torch_batch_norm(x, rm, rv, w, b, momentum, eps):
    return F.batch_norm(x, rm, rv, w, b, True, momentum, eps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    device, dtype = args.device, getattr(torch, args.dtype)
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("Unset TRITON_INTERPRET: interpreted kernels are not a speed measurement.")
    load_before = os.getloadavg()[0]
    norms = {"torch": torch_batch_norm}
    if device == "cuda":
        from supernet.kernels.triton_batch_norm import triton_batch_norm

        norms["triton"] = triton_batch_norm
    reps = args.reps if device == "cuda" else 3
    bw = copy_bandwidth(device)
    rows = []
    for shape, calls in sorted(recorded_shapes(args.batch, device).items()):
        numel = 1
        for n in shape[0]:
            numel *= n
        row = {"shape": list(shape[0]), "affine": shape[1], "running": shape[2], "calls": calls}
        row["floor_bytes"] = 5 * numel * dtype.itemsize
        if bw:
            row["floor_s"] = row["floor_bytes"] / bw
        for name, norm in norms.items():
            row[f"{name}_s"] = timer(fwd_bwd(norm, shape, dtype, device), device, reps)
        if "triton" in norms:
            row["speedup"] = row["torch_s"] / row["triton_s"]
        rows.append(row)
    per_pass = {n: sum(r[f"{n}_s"] * r["calls"] for r in rows) for n in norms}
    floor_pass = sum(r.get("floor_s", 0.0) * r["calls"] for r in rows)
    supernet_rows = [
        supernet_step(
            f"supernet fwd+bwd, batch_norm_kernel={n}", args.batch, dtype, device,
            reps=10 if device == "cuda" else 1, batch_norm_kernel=n,
        )
        for n in norms
    ]  # fmt: skip

    meta = environment(device, load_before)
    print(
        f"\ngrouped batch norms of one supernet forward pass, batch {args.batch}, {args.dtype}, "
        f"{meta['device_name']}" + (f", copy bandwidth {bw / 1e9:.0f} GB/s" if bw else "")
    )
    head = f"{'shape':<20}{'calls':>6}" + "".join(f"{n + ' us':>11}" for n in norms)
    print(head + (f"{'floor us':>10}{'speedup':>9}" if "triton" in norms else ""))
    for r in rows:
        line = f"{'x'.join(map(str, r['shape'])):<20}{r['calls']:>6}" + "".join(
            f"{r[f'{n}_s'] * 1e6:>11.1f}" for n in norms
        )
        if "triton" in norms:
            line += f"{r.get('floor_s', 0) * 1e6:>10.1f}{r['speedup']:>9.2f}"
        print(line)
    print(
        f"per forward+backward pass ({sum(r['calls'] for r in rows)} batch norms): "
        + ", ".join(f"{n} {t * 1e3:.2f} ms" for n, t in per_pass.items())
        + (f", floor {floor_pass * 1e3:.2f} ms" if bw else "")
    )
    for s in supernet_rows:
        peak = f", peak {s['peak_mib']:.0f} MiB" if s["peak_mib"] else ""
        print(f"{s['what']}: {s['seconds'] * 1e3:.1f} ms{peak}")
    out = Path(args.out or HERE / "results" / f"batch_norm_{device}_{args.dtype}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta.update(
        benchmark="batch_norm",
        command=" ".join(["python experiments/bench/batch_norm.py", *sys.argv[1:]]),
    )
    out.write_text(json.dumps({
        "meta": meta, "batch": args.batch, "dtype": args.dtype, "copy_bandwidth_Bps": bw,
        "shapes": rows, "per_pass_s": per_pass, "floor_per_pass_s": floor_pass,
        "supernet_fwd_bwd": supernet_rows,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
