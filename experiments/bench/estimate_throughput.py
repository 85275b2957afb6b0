"""Zero-cost proxy throughput: NAS-Bench-201 architectures scored per second, per proxy.

What ``stage=estimate`` does per architecture (``nas.estimate.scoring.ArchScorer``): build the
benchmark's CIFAR-10 child network (C=16, N=5, 3x32x32 inputs, 10 classes) from a seeded
initialisation, look its params and MACs up in the space's cost tables, and score it with one
proxy; ``--workers 2``: two processes of one torch thread each (``estimate.workers``), rows in
order. Data-based proxies
read one batch of ``--batch`` random normal images with random labels (the data pipeline is
not timed: the stage loads its batches once). Architectures: the first ``--archs`` of a seeded
random sample of the 15,625 (``--all``: every one, for the goal "synflow on all of NB201 in
under 10 minutes on 2 CPU cores").

    python experiments/bench/estimate_throughput.py --proxies synflow,nwot --archs 200
    python experiments/bench/estimate_throughput.py --proxies synflow --all

Prints a table and writes ``results/estimate_throughput_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nas.estimate.archs import all_archs, sample_archs  # noqa: E402
from nas.estimate.proxies import PROXIES  # noqa: E402
from nas.estimate.scoring import ArchScorer, score_all  # noqa: E402
from nas.hardware.costs import build_cost_model  # noqa: E402
from supernet.spaces import build_space  # noqa: E402

ALL_NB201 = 15_625


def make_scorer(proxy: str, batch, seed: int, device: str) -> ArchScorer:
    """The stage's scorer for the benchmark's CIFAR-10 network (module level: each worker
    process builds its own)."""
    space = build_space("nb201", [3, 32, 32], 10)
    build = lambda g: space.build_child(g, C=16, layers=5, auxiliary=False)  # noqa: E731
    table = build_cost_model(space, build, [3, 32, 32])
    costs = lambda g: {k: int(table.genotype_cost(space, g, k)) for k in ("params", "macs")}  # noqa: E731
    return ArchScorer(build, [proxy], [3, 32, 32], 10, [batch], seed, torch.device(device), costs)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--proxies", default=",".join(sorted(PROXIES)), help="comma-separated")
    p.add_argument("--archs", type=int, default=100, help="architectures per proxy")
    p.add_argument("--all", action="store_true", help="every NB201 architecture")
    p.add_argument("--batch", type=int, default=64, help="images per batch (data-based)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1, help="scoring processes (estimate.workers)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON path (default results/...)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.workers > 1:
        torch.set_num_threads(1)
    space = build_space("nb201", [3, 32, 32], 10)
    archs = list(all_archs(space)) if args.all else sample_archs(space, args.archs, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    batch = (torch.randn(args.batch, 3, 32, 32, generator=gen),
             torch.randint(0, 10, (args.batch,), generator=gen))  # fmt: skip
    rows = []
    for name in args.proxies.split(","):
        make_scorer(name, batch, args.seed, args.device).score(archs[0])  # warm-up
        start = time.perf_counter()
        nonfinite = 0
        rows_out = score_all(
            archs, make_scorer, (name, batch, args.seed, args.device), args.workers
        )
        for row in rows_out:
            value = row.scores[name]
            nonfinite += not (value == value and abs(value) != float("inf"))
        seconds = time.perf_counter() - start
        rate = len(archs) / seconds
        rows.append({
            "proxy": name, "archs": len(archs), "seconds": seconds, "archs_per_s": rate,
            "all_nb201_minutes": ALL_NB201 / rate / 60, "non_finite": nonfinite,
            "workers": args.workers,
        })  # fmt: skip
        print(f"{name:10s} {len(archs):6d} archs {seconds:8.1f} s {rate:8.2f} archs/s "
              f"-> all 15,625 in {ALL_NB201 / rate / 60:6.1f} min  ({nonfinite} non-finite)",
              flush=True)  # fmt: skip
    out = (
        Path(args.out) if args.out else HERE / "results" / f"estimate_throughput_{device.type}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "estimate_throughput", "space": "nb201", "child": "C=16, N=5, 3x32x32",
        "batch": args.batch, "threads": torch.get_num_threads(), "device": str(device),
        "workers": args.workers,
        "cpu": _cpu(), "torch": torch.__version__, "all": args.all, "rows": rows,
    }  # fmt: skip
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


def _cpu() -> str:
    try:
        from machine import cpu_model

        return cpu_model()
    except Exception:  # the record stays useful without it
        return "unknown"


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
