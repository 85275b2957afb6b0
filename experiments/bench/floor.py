"""The floor of one bilevel search step, and how far a measured step is above it.

For each row of ``search_step_*.json`` results the supernet of that row (mode, C, layers, input
size, classes; the ``torch`` kernel: the same arithmetic as ``triton``) is built and one forward
pass is traced with hooks:

- **FLOPs**: multiply-adds of every ``Conv2d`` and ``Linear`` call (as ``nas/hardware/profile.py``
  ``count_macs`` counts them), × 2 for FLOPs. A forward+backward costs 3 forwards; an α-only
  backward (first-order arch step: no weight gradients) is counted as 1 forward, so
  - first order (``darts``, ``gdas``, ``pcdarts``): arch step fwd + α-only bwd (2) + weight step
    fwd + bwd (3) = **5 forward-equivalents**;
  - second order (``darts_2nd``): virtual step fwd+bwd (3) + fwd+bwd at w' (3) + two fwd + α-only
    bwd at w± (4) + weight step (3) = **13**.
- **bytes**: the parameters read once plus every activation written once per forward: the
  outputs of leaf modules (conv, BN, ReLU, pooling, linear; not ``Identity``/``Zero``), and per
  cell its node sums and their concatenation (the cell's output, counted twice; the weighted
  sums are functional, no module to hook). The same pass multipliers apply (a backward reads the saved
  activations and writes one gradient of each). A bound from below, not a model of the caches.
- GDAS computes one sampled op per edge, so its counts are the mean over ``--draws`` samples.

Floor time = max(FLOPs / peak FLOP/s, bytes / bandwidth), per precision: fp32 (non-tensor-core
FMA rate) and bf16 (dense tensor-core rate, 2 bytes per element). CUDA rows use the given peaks
(defaults: H100 SXM, 67 TFLOP/s fp32, 990 TFLOP/s bf16 dense, 3.35 TB/s); CPU rows use peaks
measured here by a quick fp32 matmul and a tensor copy at ``--threads`` threads (bf16 is not
timed on CPU).

    python experiments/bench/floor.py --threads 1        # every results/search_step_*.json
    python experiments/bench/floor.py --results experiments/bench/results/search_step_cuda_triton.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import search_step as bench  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

# Forward-equivalents per search step (see the module docstring).
PASSES = {"first": 5, "second": 13, "gdas": 5, "pcdarts": 5}
H100 = {"fp32_flops": 67e12, "bf16_flops": 990e12, "bandwidth": 3.35e12}


# ---- counting ------------------------------------------------------------------------------
def trace(module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """Multiply-adds and activation elements written by one forward of ``module.loss``."""
    from supernet.grouped_edges import GroupedEdgesCell
    from supernet.ops import Identity, Zero
    from supernet.spaces.darts import SearchCell

    macs = 0
    elements = 0

    def numel(out: Any) -> int:
        if isinstance(out, torch.Tensor):
            return out.numel()
        if isinstance(out, (tuple, list)):
            return sum(numel(o) for o in out)
        return 0

    def hook(m: nn.Module, inputs, output) -> None:
        nonlocal macs, elements
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs += output.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            macs += output.numel() * m.in_features
        # A cell's output is its node sums, concatenated: both are written.
        elements += numel(output) * (2 if isinstance(m, SearchCell) else 1)

    handles = []
    for m in module.supernet.modules():
        leaf = not any(True for _ in m.children())
        if isinstance(m, SearchCell) or (leaf and not isinstance(m, (Identity, Zero))):
            handles.append(m.register_forward_hook(hook))
    # The per-edge path, whose modules the hooks see (grouped edges do the same arithmetic
    # through functional calls).
    cells = [m for m in module.supernet.modules() if isinstance(m, GroupedEdgesCell)]
    grouping = [c.group_edges for c in cells]
    for c in cells:
        c.group_edges = False
    try:
        with torch.no_grad():
            detached = {k: a.detach() for k, a in module.arch.as_dict().items()}
            module.loss((x, y), detached)
    finally:
        for h in handles:
            h.remove()
        for c, on in zip(cells, grouping):
            c.group_edges = on
    return macs, elements


def count(row: dict[str, Any], draws: int) -> dict[str, float]:
    """Per-image forward MACs and activation elements, and the weights, of a row's supernet."""
    argv = [
        *("--C", str(row["C"]), "--layers", str(row["layers"]), "--size", str(row["size"])),
        *("--classes", str(row["classes"]), "--batch", str(row["batch"]), "--kernel", "torch"),
    ]
    args = bench.parse_args(argv)
    torch.manual_seed(0)
    module, _ = bench.build(row["mode"], args, torch.device("cpu"))
    n = 4  # per-image counts from a small batch (BN in training mode needs > 1 value)
    x = torch.randn(n, 3, row["size"], row["size"])
    y = torch.randint(0, row["classes"], (n,))
    samples = [trace(module, x, y) for _ in range(draws if row["mode"] == "gdas" else 1)]
    return {
        "macs_per_image": statistics.mean(s[0] for s in samples) / n,
        "activation_elements_per_image": statistics.mean(s[1] for s in samples) / n,
        "weights": sum(p.numel() for p in module.supernet.parameters()),
        "arch_params": sum(p.numel() for p in module.arch.parameters()),
    }


# ---- CPU peaks -----------------------------------------------------------------------------
def cpu_peaks(threads: int, seconds: float = 2.0) -> dict[str, float]:
    """Best-of fp32 matmul FLOP/s (n = 1024) and copy bandwidth (64 MiB read + 64 MiB written)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    src = torch.randn(16 * 2**20)
    dst = torch.empty_like(src)

    def best(fn) -> float:
        fn()
        times, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 3:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    flops = 2 * 1024**3 / best(lambda: torch.mm(a, b))
    bandwidth = 2 * src.numel() * 4 / best(lambda: dst.copy_(src))
    return {"fp32_flops": flops, "bf16_flops": None, "bandwidth": bandwidth, "threads": threads}


# ---- the floor -----------------------------------------------------------------------------
def floor_row(row: dict[str, Any], counts: dict[str, float], peaks: dict[str, Any]) -> dict:
    passes = PASSES[row["mode"]]
    b = row["batch"]
    flops = passes * 2 * counts["macs_per_image"] * b
    out = {
        "file": row["file"],
        "mode": row["mode"],
        "strategy": row["strategy"],
        "kernel": row.get("kernel", "torch"),  # older rows: eager only
        "batch": b,
        "threads": row["threads"],
        "measured_s": row["median_s"],
        "passes": passes,
        **counts,
        "flops_per_step": flops,
        "achieved_flop_per_s": flops / row["median_s"],
    }
    for prec, size in (("fp32", 4), ("bf16", 2)):
        nbytes = passes * size * (counts["weights"] + counts["activation_elements_per_image"] * b)
        out[f"bytes_per_step_{prec}"] = nbytes
        peak = peaks[f"{prec}_flops"]
        if peak is None:
            out[f"floor_s_{prec}"] = out[f"ratio_{prec}"] = out[f"bound_{prec}"] = None
            continue
        t_flops, t_bytes = flops / peak, nbytes / peaks["bandwidth"]
        out[f"floor_s_{prec}"] = max(t_flops, t_bytes)
        out[f"bound_{prec}"] = "compute" if t_flops >= t_bytes else "memory"
        out[f"ratio_{prec}"] = row["median_s"] / out[f"floor_s_{prec}"]
    return out


def table(rows: list[dict[str, Any]]) -> str:
    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    head = (
        f"{'file':<42}{'mode':<8}{'kernel':<7}{'batch':>6}{'thr':>4}{'meas s':>9}{'GFLOP':>8}"
        f"{'MB fp32':>9}{'floor32 ms':>11}{'×':>8}{'floor16 ms':>11}{'×':>8}{'GFLOP/s':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['file']:<42}{r['mode']:<8}{r['kernel']:<7}{r['batch']:>6d}{r['threads']:>4d}"
            f"{r['measured_s']:>9.3f}{r['flops_per_step'] / 1e9:>8.1f}"
            f"{r['bytes_per_step_fp32'] / 1e6:>9.0f}"
            f"{f(r['floor_s_fp32'] and 1e3 * r['floor_s_fp32'], '.2f'):>11}"
            f"{f(r['ratio_fp32'], ',.0f'):>8}"
            f"{f(r['floor_s_bf16'] and 1e3 * r['floor_s_bf16'], '.3f'):>11}"
            f"{f(r['ratio_bf16'], ',.0f'):>8}{r['achieved_flop_per_s'] / 1e9:>9.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", nargs="*", default=None, help="search_step JSONs (default: all)")
    p.add_argument("--threads", type=int, default=1, help="threads for the CPU peak benchmark")
    p.add_argument("--peak-fp32", type=float, default=H100["fp32_flops"], help="CUDA FLOP/s")
    p.add_argument("--peak-bf16", type=float, default=H100["bf16_flops"], help="CUDA FLOP/s")
    p.add_argument("--bandwidth", type=float, default=H100["bandwidth"], help="CUDA bytes/s")
    p.add_argument("--draws", type=int, default=8, help="GDAS samples averaged")
    p.add_argument("--out", default=str(HERE / "results" / "floor.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    paths = (
        [Path(r) for r in args.results]
        if args.results
        else sorted((HERE / "results").glob("search_step_*.json"))
    )
    cuda_peaks = {"fp32_flops": args.peak_fp32, "bf16_flops": args.peak_bf16}
    cuda_peaks["bandwidth"] = args.bandwidth
    cpu = None
    rows, cache, sources = [], {}, []
    for path in paths:
        data = json.loads(path.read_text())
        meta = data["meta"]
        is_cuda = meta["device"].startswith("cuda")
        if not is_cuda and cpu is None:
            print(f"[floor] CPU peaks at {args.threads} thread(s) ...", flush=True)
            cpu = cpu_peaks(args.threads)
        peaks = cuda_peaks if is_cuda else cpu
        sources.append({"file": path.name, "device_name": meta["device_name"], "peaks": peaks})
        for row in data["rows"]:
            key = (row["mode"], row["C"], row["layers"], row["size"], row["classes"])
            if key not in cache:
                print(f"[floor] counting {key} ...", flush=True)
                cache[key] = count(row, args.draws)
            rows.append(floor_row({**row, "file": path.name}, cache[key], peaks))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "benchmark": "floor",
        "command": " ".join(["python experiments/bench/floor.py", *argv]),
        "passes": PASSES,
        "cpu_peaks": cpu,
        "cuda_peaks": cuda_peaks,
        "cpu_count": os.cpu_count(),
        "cpu_name": bench.device_name("cpu"),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_1min": os.getloadavg()[0],
    }
    out.write_text(json.dumps({"meta": meta, "sources": sources, "rows": rows}, indent=2) + "\n")
    if cpu:
        print(
            f"\nCPU ({meta['cpu_name']}, {args.threads} thread(s)): "
            f"{cpu['fp32_flops'] / 1e9:.1f} GFLOP/s fp32 matmul, {cpu['bandwidth'] / 1e9:.1f} GB/s copy"
        )
    print(
        f"CUDA peaks: {args.peak_fp32 / 1e12:.0f} TFLOP/s fp32, {args.peak_bf16 / 1e12:.0f} TFLOP/s "
        f"bf16, {args.bandwidth / 1e12:.2f} TB/s\n"
    )
    print(table(rows))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
