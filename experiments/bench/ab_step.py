"""Two search-step configurations compared in one process, their steps interleaved.

On the 2-core VMs this project is developed on, the same search step measured in two processes
differs by up to 35% (the first process after an idle spell pays for memory the host has to back
again; see ``README.md``, "Session 6"), which hides any change under ~10%. Here both supernets
are built in one process from the same seed and batches (configuration A from the
``search_step.py`` flags, B from the same flags plus ``--b``), warmed up, then stepped
alternately in ABBA order, so every pair of steps sees the same machine. Reported per
configuration: median and min seconds per step, and the median of the per-round ratios B/A, the
figure to quote (a ratio of neighbours, not of two medians taken minutes apart).

    python experiments/bench/ab_step.py --modes first --threads 1 --channels-last \\
        --b "--compile --compile-scope edge" --rounds 6
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_step  # noqa: E402  (the step, the builder and the flags of search_step.py)


def parse(argv: list[str]) -> tuple[argparse.Namespace, argparse.Namespace, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True)
    p.add_argument("--b", required=True, help="search_step.py flags added for configuration B")
    p.add_argument("--rounds", type=int, default=6, help="timed ABBA rounds (one step each)")
    own, rest = p.parse_known_args(argv)
    a = search_step.parse_args(rest)
    b = search_step.parse_args([*rest, *shlex.split(own.b)])
    if len(a.modes) != 1:
        raise SystemExit(f"ab_step.py compares one mode at a time, got --modes {','.join(a.modes)}")
    return own, a, b


def batches(args: argparse.Namespace, mode: str, device: torch.device):
    gen = torch.Generator().manual_seed(args.seed)
    out = []
    for _ in range(2):  # train, val
        x = torch.randn(args.batch[mode], 3, args.size, args.size, generator=gen)
        y = torch.randint(0, args.classes, (args.batch[mode],), generator=gen)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append((x.to(device), y.to(device)))
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    own, a, b = parse(argv)
    mode, device = a.modes[0], torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    load_before = os.getloadavg()[0]
    configs = {}
    for name, args in (("A", a), ("B", b)):
        torch.manual_seed(args.seed)
        module, arch_optimizer = search_step.build(mode, args, device)
        configs[name] = (args, module, arch_optimizer, batches(args, mode, device))

    def step(name: str) -> float:
        args, module, arch_optimizer, (train, val) = configs[name]
        start = time.perf_counter()
        with search_step.precision(args, device):
            search_step.search_step(module, arch_optimizer, train, val)
        search_step.sync(device)
        return time.perf_counter() - start

    first = {}
    for name in configs:  # warm-up (a compiled configuration compiles here)
        first[name] = step(name)
        for _ in range(max(a.warmup - 1, 0)):
            step(name)
    times: dict[str, list[float]] = {"A": [], "B": []}
    for r in range(own.rounds):
        for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
            times[name].append(step(name))
    ratios = [tb / ta for ta, tb in zip(times["A"], times["B"])]
    row = {
        "mode": mode,
        "strategy": search_step.STRATEGIES[mode],
        "batch": a.batch[mode],
        "b_flags": own.b,
        "rounds": own.rounds,
        **{f"{n}_median_s": statistics.median(t) for n, t in times.items()},
        **{f"{n}_min_s": min(t) for n, t in times.items()},
        **{f"{n}_times_s": t for n, t in times.items()},
        **{f"{n}_first_step_s": t for n, t in first.items()},
        "ratio_b_over_a_median": statistics.median(ratios),
        "ratios_b_over_a": ratios,
        "peak_memory_mb_both": search_step.peak_memory_mb(device),
        "threads": torch.get_num_threads(),
    }
    meta = {
        "benchmark": "ab_step",
        "command": " ".join(["python experiments/bench/ab_step.py", *map(shlex.quote, argv)]),
        "what": "two search-step configurations in one process, steps interleaved ABBA",
        **search_step.environment(a.device, load_before),
    }
    kind = "cuda" if a.device.startswith("cuda") else "cpu"
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"ab_step_{kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": [row]}, indent=2) + "\n")

    print(
        f"{meta['device_name']} ({a.device}), torch {meta['torch']}, {row['threads']} threads, "
        f"load average {load_before:.1f} -> {meta['loadavg_1min_after']:.1f}\n"
        f"{row['strategy']}, batch {row['batch']}, {own.rounds} ABBA rounds; B = A + {own.b!r}"
    )
    print(f"{'config':<8}{'median s':>10}{'min s':>8}{'1st step s':>12}")
    for n in ("A", "B"):
        print(f"{n:<8}{row[f'{n}_median_s']:>10.3f}{row[f'{n}_min_s']:>8.3f}{first[n]:>12.1f}")
    print(
        f"B/A per round: {', '.join(f'{r:.3f}' for r in ratios)}; "
        f"median {row['ratio_b_over_a_median']:.3f}"
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
