"""Benchmark: the mixed-op core (weighted sum of candidates), fused Triton kernel vs eager PyTorch.

At the DARTS CIFAR search shapes (batch 64, C=16, 8 cells, 32x32): every node of a cell mixes
(2+i) edges x 7 computed ops = 14, 21, 28, 35 candidate tensors. For each cell geometry this
times forward+backward of all four node sums (median of many runs, CUDA events), reports peak
memory, the byte floor of the fused form ((3K+2) x numel x bytes: read K inputs and write one
output forward; read g and K inputs, write K gradients backward) and the achieved bandwidth.
It also times one forward+backward of the whole supernet with each backend.

    python experiments/bench/mixed_op.py [--device cuda] [--batch 64] [--dtype float32|bfloat16]
        [--layout dense|sliced]

Writes experiments/bench/results/mixed_op_<device>.json. On CPU the kernel only runs through
Triton's interpreter, which is not a speed measurement: CPU runs time the eager path only.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from supernet.kernels.torch_ref import weighted_sum  # noqa: E402

# (name, channels, spatial) of the DARTS CIFAR search cells' node tensors at C=16.
CELLS = [("normal 32x32", 16, 32), ("reduce 16x16", 32, 16), ("normal 16x16", 32, 16),
         ("reduce 8x8", 64, 8), ("normal 8x8", 64, 8)]  # fmt: skip
CELL_COUNTS = {
    "normal 32x32": 2,
    "reduce 16x16": 1,
    "normal 16x16": 2,
    "reduce 8x8": 1,
    "normal 8x8": 2,
}
NODE_CANDIDATES = [14, 21, 28, 35]


def timer(fn, device: str, reps: int, warmup: int = 5) -> float:
    """Median seconds of ``fn()`` (CUDA events on GPU, perf_counter on CPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def cell_inputs(batch, C, S, dtype, device, seed=0, layout="dense"):
    """Per node, its K candidate outputs: separate tensors (``dense``: the per-edge path), or
    channel slices of wider tensors of 4 edges each (``sliced``: what ``group_edges`` hands
    the kernel, read in place at each slice's batch stride)."""
    g = torch.Generator(device=device).manual_seed(seed)
    nodes = []
    for K in NODE_CANDIDATES:
        if layout == "sliced":
            wide = [
                torch.randn(
                    batch, 4 * C, S, S, device=device, dtype=dtype, generator=g
                ).requires_grad_()
                for _ in range(-(-K // 4))
            ]
            xs = [wide[i // 4][:, (i % 4) * C : (i % 4 + 1) * C] for i in range(K)]
        else:
            xs = [
                torch.randn(
                    batch, C, S, S, device=device, dtype=dtype, generator=g
                ).requires_grad_()
                for _ in range(K)
            ]
        w = torch.softmax(torch.randn(K, device=device, generator=g), 0).requires_grad_()
        nodes.append((xs, w))
    grads = [
        torch.randn(batch, C, S, S, device=device, dtype=dtype, generator=g)
        for _ in NODE_CANDIDATES
    ]
    return nodes, grads


def fwd_bwd(mix, nodes, grads):
    def run():
        outs = [mix(xs, w) for xs, w in nodes]
        torch.autograd.backward(outs, grads)

    return run


def copy_bandwidth(device: str) -> float | None:
    """Measured device-to-device copy bandwidth in bytes/s (read + write)."""
    if device != "cuda":
        return None
    a = torch.empty(256 * 2**20, device=device, dtype=torch.uint8)
    b = torch.empty_like(a)
    t = timer(lambda: b.copy_(a), device, reps=20)
    return 2 * a.numel() / t


def supernet_step(what: str, batch: int, dtype, device: str, reps: int, **space_options) -> dict:
    """One forward+backward of the DARTS CIFAR supernet built with ``space_options``."""
    from supernet.spaces.darts import DartsSpace

    torch.manual_seed(0)
    net = (
        DartsSpace(input_shape=(3, 32, 32), num_classes=10, **space_options)
        .build_supernet()
        .to(device)
    )
    x = torch.randn(batch, 3, 32, 32, device=device)
    alphas = {
        k: (1e-3 * torch.randn(14, 8, device=device)).requires_grad_() for k in ("normal", "reduce")
    }

    def run():
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            weights = {k: torch.softmax(a, -1) for k, a in alphas.items()}
            loss = net(x, weights).float().square().mean()
        loss.backward()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = timer(run, device, reps=reps, warmup=3)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return {"what": what, "seconds": t, "peak_mib": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--reps", type=int, default=50)
    p.add_argument(
        "--layout",
        default="dense",
        choices=["dense", "sliced"],
        help="candidate outputs as separate tensors, or channel slices (group_edges)",
    )
    p.add_argument("--out", default=None)
    args = p.parse_args()
    device, dtype = args.device, getattr(torch, args.dtype)
    backends = {"torch": weighted_sum}
    if device == "cuda":
        from supernet.kernels.triton_mix import triton_mix

        backends["triton"] = triton_mix
    reps = args.reps if device == "cuda" else 3
    bw = copy_bandwidth(device)
    rows = []
    for name, C, S in CELLS:
        nodes, grads = cell_inputs(args.batch, C, S, dtype, device, layout=args.layout)
        numel = args.batch * C * S * S
        floor_bytes = sum((3 * K + 2) * numel * dtype.itemsize for K in NODE_CANDIDATES)
        row = {"cell": name, "shape": [args.batch, C, S, S], "floor_bytes": floor_bytes}
        for backend, mix in backends.items():
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            row[f"{backend}_s"] = timer(fwd_bwd(mix, nodes, grads), device, reps)
            if device == "cuda":
                row[f"{backend}_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            row[f"{backend}_GBps"] = floor_bytes / row[f"{backend}_s"] / 1e9
        if "triton" in backends:
            row["speedup"] = row["torch_s"] / row["triton_s"]
        if bw:
            row["floor_s"] = floor_bytes / bw
        rows.append(row)
        del nodes, grads

    total = {b: sum(r[f"{b}_s"] * CELL_COUNTS[r["cell"]] for r in rows) for b in backends}
    step_rows = [
        supernet_step(f"supernet fwd+bwd ({b})", args.batch, dtype, device,
                      reps=10 if device == "cuda" else 1, kernel=b)
        for b in backends
    ]  # fmt: skip

    device_name = (
        torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    )
    print(
        f"\nmixed-op core, DARTS CIFAR shapes, batch {args.batch}, {args.dtype}, "
        f"{args.layout} inputs, {device_name}"
    )
    if bw:
        print(f"measured copy bandwidth: {bw / 1e9:.0f} GB/s")
    head = f"{'cell':<14}" + "".join(f"{b + ' ms':>12}{b + ' GB/s':>12}" for b in backends)
    print(head + (f"{'floor ms':>10}{'speedup':>9}" if "triton" in backends else ""))
    for r in rows:
        line = f"{r['cell']:<14}" + "".join(
            f"{r[f'{b}_s'] * 1e3:>12.3f}{r[f'{b}_GBps']:>12.0f}" for b in backends
        )
        if "triton" in backends:
            line += f"{r.get('floor_s', 0) * 1e3:>10.3f}{r['speedup']:>9.2f}"
        print(line)
    print(
        "whole supernet's node sums (8 cells): "
        + ", ".join(f"{b} {t * 1e3:.2f} ms" for b, t in total.items())
    )
    for s in step_rows:
        print(
            f"{s['what']}: {s['seconds'] * 1e3:.1f} ms"
            + (f", peak {s['peak_mib']:.0f} MiB" if s["peak_mib"] else "")
        )
    suffix = "" if args.layout == "dense" else f"_{args.layout}"
    out = Path(args.out or f"experiments/bench/results/mixed_op_{device}_{args.dtype}{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "device": device_name, "torch": torch.__version__, "batch": args.batch, "dtype": args.dtype, "layout": args.layout,
        "copy_bandwidth_Bps": bw, "cells": rows, "supernet_node_sums_s": total, "supernet_fwd_bwd": step_rows,
        "command": " ".join(sys.argv),
    }, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
