"""Where a search step's GPU time goes: kernels per step, GPU busy time against wall time, and the
kernels and aten ops that take it, from ``torch.profiler`` over eager steps.

The module and the step are ``search_step.py``'s (same options), run in this process:

    python experiments/bench/profile_step.py --device cuda --kernel triton --batch 64 --modes first
    python experiments/bench/profile_step.py --device cuda --kernel triton --batch 64 --modes first --bf16

Read it with ``search_step.py --cuda-graph``: a graph replay removes the launch gaps but not the
kernels, so "GPU busy ms per step" here is about what a graphed step can reach. The profile
needs CUDA (on CPU there are no kernels to count); ``--cuda-graph`` is refused, since the
profiler does not see inside graph replays.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search_step as bench  # noqa: E402
import torch  # noqa: E402


def profile(mode: str, args: argparse.Namespace, top: int) -> dict[str, Any]:
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.manual_seed(args.seed)
    module, arch_optimizer = bench.build(mode, args, device)
    gen = torch.Generator().manual_seed(args.seed)
    n = args.batch[mode]

    def batch():
        x = torch.randn(n, 3, args.size, args.size, generator=gen)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(device), torch.randint(0, args.classes, (n,), generator=gen).to(device)

    train, val = batch(), batch()
    for _ in range(args.warmup):
        with bench.precision(args, device):
            bench.search_step(module, arch_optimizer, train, val)
    bench.sync(device)

    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(args.steps):
            with bench.precision(args, device):
                bench.search_step(module, arch_optimizer, train, val)
        bench.sync(device)
        wall = (time.perf_counter() - start) / args.steps

    kernels: dict[str, list[float]] = collections.defaultdict(list)
    for event in prof.events():
        # User annotations (e.g. "Optimizer.step#SGD.step") appear on the device timeline as
        # ranges over kernels already counted: left out, or the busy time counts them twice.
        if event.device_type == torch.autograd.DeviceType.CUDA and not _annotation(event):
            kernels[event.name].append(event.device_time)  # microseconds
    per_step = 1.0 / args.steps
    kernel_rows = sorted(
        (
            {
                "kernel": name,
                "ms_per_step": sum(t) / 1e3 * per_step,
                "launches_per_step": len(t) * per_step,
                "mean_us": sum(t) / len(t),
            }
            for name, t in kernels.items()
        ),
        key=lambda r: -r["ms_per_step"],
    )
    busy = sum(r["ms_per_step"] for r in kernel_rows)
    ops = sorted(
        (
            {
                "op": a.key,
                "device_ms_per_step": a.self_device_time_total / 1e3 * per_step,
                "calls_per_step": a.count * per_step,
            }
            for a in prof.key_averages()
            if a.self_device_time_total > 0
        ),
        key=lambda r: -r["device_ms_per_step"],
    )
    return {
        "mode": mode,
        "batch": n,
        "precision": "bf16-mixed" if args.bf16 else "32",
        "kernel": args.kernel,
        "group_edges": args.group_edges,
        "channels_last": args.channels_last,
        "cudnn_benchmark": args.cudnn_benchmark,
        "wall_ms_per_step": wall * 1e3,
        "gpu_busy_ms_per_step": busy,
        "kernel_launches_per_step": sum(r["launches_per_step"] for r in kernel_rows),
        "top_kernels": kernel_rows[:top],
        "top_ops": ops[:top],
    }


def _annotation(event) -> bool:
    return bool(getattr(event, "is_user_annotation", False)) or "#" in event.name


def short(name: str, width: int = 70) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def print_report(r: dict[str, Any]) -> None:
    print(
        f"\n{r['mode']} batch {r['batch']} precision {r['precision']} kernel {r['kernel']} "
        f"group_edges {r['group_edges']} channels_last {r['channels_last']} cudnn_benchmark "
        f"{r['cudnn_benchmark']}: wall {r['wall_ms_per_step']:.1f} ms/step, GPU busy "
        f"{r['gpu_busy_ms_per_step']:.1f} ms/step, {r['kernel_launches_per_step']:.0f} kernels/step"
    )
    print(f"{'kernel':<72}{'ms/step':>9}{'n/step':>8}{'mean us':>9}")
    for k in r["top_kernels"]:
        print(
            f"{short(k['kernel']):<72}{k['ms_per_step']:>9.2f}{k['launches_per_step']:>8.0f}"
            f"{k['mean_us']:>9.1f}"
        )
    print(f"{'aten op (self device time)':<72}{'ms/step':>9}{'n/step':>8}")
    for o in r["top_ops"]:
        print(f"{short(o['op']):<72}{o['device_ms_per_step']:>9.2f}{o['calls_per_step']:>8.0f}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--top", type=int, default=25, help="kernels and ops listed")
    own, rest = extra.parse_known_args(argv)
    args = bench.parse_args(rest)
    if not args.device.startswith("cuda"):
        raise SystemExit("profile_step.py counts CUDA kernels: it needs --device cuda")
    if args.cuda_graph:
        raise SystemExit(
            "profile_step.py profiles eager steps: the profiler does not see inside CUDA graph "
            "replays (drop --cuda-graph; time graphed steps with search_step.py)"
        )
    reports = [profile(mode, args, own.top) for mode in args.modes]
    for r in reports:
        print_report(r)
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / "profile_step.json"
    meta = {
        "benchmark": "profile_step",
        "command": " ".join(["python experiments/bench/profile_step.py", *argv]),
        **bench.environment(args.device, 0.0),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": reports}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
