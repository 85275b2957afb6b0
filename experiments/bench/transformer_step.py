"""Benchmark: a transformer supernet's training step at its largest choice vs the standalone
child of the same size (issue goal: at most 1.3x the child's time and memory), both spaces.

For ``vit`` and ``gpt`` at a few sizes: one forward + backward (median seconds) and the bytes
autograd saves for backward, of

- ``supernet``: the weight-entangled supernet with one-hot mixing weights at the largest choice
  of every decision, computing that choice only (``active``: the single path a sampling
  strategy runs; the largest is the most expensive path);
- ``child``: the plain network of that genotype (``build_child``), the network retraining runs.

    python experiments/bench/transformer_step.py [--device cuda] [--reps 10] [--threads 2]

Writes experiments/bench/results/transformer_step_<device>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.bench.superkernel import saved_bytes, timer  # noqa: E402
from supernet.spaces import build_space  # noqa: E402

# (space, options, input shape, classes, batch)
CPU_SIZES = [
    ("vit", dict(C=16, layers=4), (3, 32, 32), 10, 32),
    ("vit", dict(embed_dims=[192, 216, 240], depths=[4, 5, 6], num_heads=[3, 4],
                 mlp_ratios=[3.5, 4.0]), (3, 32, 32), 10, 16),
    ("gpt", dict(n_embd=[64, 128], n_layer=[2, 4], n_head=[2, 4], intermediate_size=[256, 512],
                 head_size=32), (64,), 256, 16),
    ("gpt", dict(n_embd=[192, 384], n_layer=[4, 6], n_head=[4, 6], intermediate_size=[768, 1536],
                 head_size=64), (128,), 256, 8),
]  # fmt: skip
CUDA_SIZES = [
    ("vit", dict(), (3, 224, 224), 1000, 64),
    ("gpt", dict(), (256,), 50257, 16),
]


def largest_path(space) -> tuple[dict, dict]:
    """One-hot weights and active columns at every decision's largest choice."""
    w = torch.zeros(space.alpha_shape)
    cols = []
    for r, d in enumerate(space.decisions):
        w[r, d.default] = 1.0
        cols.append([d.default])
    return {"decisions": w}, {"decisions": cols}


def bench(name, options, shape, classes, batch, device, reps) -> dict:
    space = build_space(name, shape, classes, **options)
    supernet = space.build_supernet().to(device)
    genotype = space.reference_genotype()  # every decision at its largest
    child = space.build_child(genotype).to(device)
    weights, active = largest_path(space)
    weights = {k: v.to(device) for k, v in weights.items()}
    if len(shape) == 1:
        x = torch.randint(0, classes, (batch, *shape), device=device)
        y = torch.randint(0, classes, (batch * shape[0],), device=device)
    else:
        x = torch.randn(batch, *shape, device=device)
        y = torch.randint(0, classes, (batch,), device=device)

    def super_step():
        F.cross_entropy(supernet(x, weights, active), y).backward()

    def child_step():
        F.cross_entropy(child(x)[0], y).backward()

    rows = {}
    for label, step in (("supernet", super_step), ("child", child_step)):
        rows[label] = {
            "s": timer(step, device, reps, warmup=2),
            "saved_mib": saved_bytes(step)[0] / 2**20,
        }
    params = sum(p.numel() for p in child.parameters())
    return {
        "space": name, "options": options, "input": list(shape), "batch": batch,
        "genotype": str(genotype), "child_params": params, **rows,
        "time_ratio": rows["supernet"]["s"] / rows["child"]["s"],
        "memory_ratio": rows["supernet"]["saved_mib"] / rows["child"]["saved_mib"],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = CUDA_SIZES if args.device == "cuda" else CPU_SIZES
    results = [bench(*size, args.device, args.reps) for size in sizes]
    print(f"{'space':5} {'child params':>12} {'supernet s':>10} {'child s':>9} {'time x':>6} "
          f"{'saved MiB (super/child)':>24} {'mem x':>6}")  # fmt: skip
    for r in results:
        print(f"{r['space']:5} {r['child_params']:>12,} {r['supernet']['s']:>10.4f} "
              f"{r['child']['s']:>9.4f} {r['time_ratio']:>6.2f} "
              f"{r['supernet']['saved_mib']:>11.1f} / {r['child']['saved_mib']:<10.1f} "
              f"{r['memory_ratio']:>6.2f}")  # fmt: skip
    machine = {"device": args.device, "threads": args.threads, "torch": torch.__version__,
               "cpu": platform.processor() or platform.machine()}  # fmt: skip
    if args.device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(0)
    out = Path(__file__).parent / "results" / f"transformer_step_{args.device}.json"
    out.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
