"""Benchmark: the weight-sharing superkernel mix vs the explicit weighted sum of separate convs.

Two levels, forward+backward (median seconds) and memory, at a few sizes:

- ``depthwise``: one depthwise conv with the merged 7x7 kernel (``superkernel_depthwise``) vs
  three depthwise convs (3x3, 5x5, 7x7 sub-kernels) summed with the weights
  (``separate_depthwise``): the same numbers (exact by linearity).
- ``block``: one mbconv search layer's 6 candidates (k 3/5/7 x e 3/6), mixed at the kernel level
  in one shared block (``SuperMBConv``, ``superkernel=true``) vs 6 separate MBConv blocks summed
  with the weights (``superkernel=false``): a relaxation vs the explicit mix (different numbers).

Memory: ``saved_mib``, the bytes autograd saves for backward (activation memory, both devices),
and on CUDA ``peak_mib`` (``torch.cuda.max_memory_allocated`` over the step).

    python experiments/bench/superkernel.py [--device cuda] [--reps 10] [--threads 1]

Writes experiments/bench/results/superkernel_<device>.json.
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

from supernet.spaces.mbconv import MBConvSearchLayer  # noqa: E402
from supernet.superkernel import separate_depthwise, superkernel_depthwise  # noqa: E402

# (level, batch, channels (depthwise: hidden; block: C_in = C_out), spatial side)
CPU_SIZES = [("depthwise", 16, 96, 32), ("depthwise", 32, 240, 16), ("block", 16, 16, 32),
             ("block", 32, 40, 16)]  # fmt: skip
CUDA_SIZES = [("depthwise", 64, 144, 56), ("depthwise", 64, 480, 14), ("block", 64, 24, 56),
              ("block", 64, 80, 14), ("block", 128, 96, 14)]  # fmt: skip
KS = (3, 5, 7)


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for backward during ``fn()`` (distinct storages)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def timer(step, device: str, reps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def case(level: str, n: int, C: int, hw: int, device: str, reps: int, warmup: int) -> dict:
    g = torch.Generator().manual_seed(0)
    dev = torch.device(device)
    if level == "depthwise":
        x = torch.randn(n, C, hw, hw, generator=g).to(dev).requires_grad_()
        W = torch.randn(C, 1, 7, 7, generator=g).to(dev).requires_grad_()
        mix = torch.randn(3, generator=g).softmax(0).to(dev).requires_grad_()
        fns = {
            "superkernel": lambda: superkernel_depthwise(x, W, mix, KS),
            "separate": lambda: separate_depthwise(x, W, mix, KS),
        }
        params = [x, W, mix]
    else:
        x = torch.randn(n, C, hw, hw, generator=g).to(dev)
        layers = {
            "superkernel": MBConvSearchLayer(C, C, 1, se=False, superkernel=True).to(dev),
            "separate": MBConvSearchLayer(C, C, 1, se=False, superkernel=False).to(dev),
        }
        mix = torch.randn(7, generator=g).softmax(0).to(dev).requires_grad_()
        fns = {k: (lambda m=m: m(x, mix)) for k, m in layers.items()}
        params = [mix]
    row = {"level": level, "batch": n, "channels": C, "side": hw}
    for name, fn in fns.items():

        def step(fn=fn):
            for p in params:
                p.grad = None
            fn().sum().backward()

        row[f"{name}_s"] = timer(step, device, reps, warmup)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        nbytes, out = saved_bytes(fn)
        out.sum().backward()
        row[f"{name}_saved_mib"] = nbytes / 2**20
        if device == "cuda":
            torch.cuda.synchronize()
            row[f"{name}_peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        del out
    row["speedup"] = row["separate_s"] / row["superkernel_s"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    reps = args.reps or (30 if cuda else 5)
    rows = [case(*c, args.device, reps, args.warmup) for c in (CUDA_SIZES if cuda else CPU_SIZES)]
    print(f"{'level':<10}{'N':>5}{'C':>6}{'HxW':>6}{'superkernel ms':>16}{'separate ms':>13}"
          f"{'speedup':>9}{'saved MiB sk/sep':>20}" + ("  peak MiB sk/sep" if cuda else ""))  # fmt: skip
    for r in rows:
        peak = f"  {r['superkernel_peak_mib']:.0f}/{r['separate_peak_mib']:.0f}" if cuda else ""
        print(
            f"{r['level']:<10}{r['batch']:>5}{r['channels']:>6}{r['side']:>6}"
            f"{1e3 * r['superkernel_s']:>16.1f}{1e3 * r['separate_s']:>13.1f}{r['speedup']:>8.2f}x"
            f"{r['superkernel_saved_mib']:>12.1f}/{r['separate_saved_mib']:.1f}{peak}"
        )
    out = Path(args.out or f"experiments/bench/results/superkernel_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    meta = {"device": device_name, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "reps": reps, "dtype": "float32"}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
