"""Search-step time of the default job when another process holds a core: the thread settings.

The default job (``python train.py``: first-order DARTS, C=8, 5 cells, digits 8x8, batch 64,
``channels_last=auto`` = NHWC on the CPU) is timed per bilevel search step under two
conditions, back to back:

- ``idle``: nothing started by the bench (other users of the machine are recorded: the load
  average before each run, and from ``/proc/stat`` the CPUs the step used, ``own CPUs``, and
  the CPUs everything else used while it ran, ``others``, the busy loop included);
- ``shared``: a busy loop (``python -c 'while True: pass'``) pinned to the last CPU of this
  process's affinity with ``taskset``, as a second job on the machine would be.

Each setting runs in a fresh interpreter (libgomp reads ``OMP_WAIT_POLICY`` when torch is
imported), settings interleaved, ``--repeats`` times. A setting is ``<threads>[+passive|+active]``:
``<threads>`` is an integer or ``auto`` (``nas/run/threads.py``, chosen in the worker once the busy
loop runs, as ``stages.run`` does); ``+passive`` / ``+active`` set ``OMP_WAIT_POLICY`` and
``+spin<N>`` sets ``GOMP_SPINCOUNT=N`` (without any, both are unset: libgomp's default spins
300,000 iterations at a barrier, then sleeps; PASSIVE sleeps at once, ACTIVE never does).

The step is ``search_step.py``'s (``SearchModule.training_step`` without Lightning) on random
batches of the digits' shape. A run stops timing after ``--steps`` steps or ``--max-seconds``
(at least 3 steps), so the slow settings do not take minutes. ``epoch s`` is the median step
times the default job's 12 search steps per epoch (718 weight-half images / batch 64); it leaves
out the validation loop and figures.

    python experiments/bench/shared_cores.py                  # settings N,N+passive,1,auto
    python experiments/bench/shared_cores.py --conditions idle --settings 2,2+passive,1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = ROOT / "conf"
STEPS_PER_EPOCH = 12  # the default job: 1437 train images, half for the weights, batch 64
# N is every CPU this process may run on (torch's default thread count). 2+active (spin without
# end) is left out: it is the slowest (README), and minutes per run when a core is busy.
DEFAULT_SETTINGS = "N,N+passive,1,auto"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.bench.machine import cpu_model  # noqa: E402 - torch-free


# ---- worker: one setting in a fresh interpreter ---------------------------------------------
def proc_stat() -> dict[int, tuple[int, int]]:
    from nas.run.threads import read_cpu_times

    try:
        return read_cpu_times(Path("/proc/stat").read_text())
    except OSError:
        return {}


def idle_per_cpu(before, after) -> dict[int, float]:
    out = {}
    for cpu in sorted(set(before) & set(after)):
        ticks = after[cpu][1] - before[cpu][1]
        if ticks > 0:
            out[cpu] = round((after[cpu][0] - before[cpu][0]) / ticks, 3)
    return out


def worker(setting: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from experiments.bench.search_step import arch_step, weight_step
    from nas.run import builders, threads
    from nas.run.schema import register_configs

    threads_value = setting.split("+")[0]
    choice = threads.choose(threads_value)
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["logger=none", *args.override])
    torch.manual_seed(0)
    space = builders.space_from_config(cfg)
    module = builders.search_module(cfg, space)
    module.train()
    module.strategy.on_epoch_start(0, cfg.trainer.max_epochs, module)
    arch_optimizer = instantiate(cfg.strategy.arch_optimizer)(module.arch.parameters())
    _ = module.weight_optimizer
    nhwc = builders.channels_last(cfg)
    n = cfg.strategy.batch_size
    gen = torch.Generator().manual_seed(0)

    def batch():
        x = torch.randn(n, *cfg.data.input_shape, generator=gen)
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, cfg.data.num_classes, (n,), generator=gen)

    train, val = batch(), batch()
    warm_start = time.perf_counter()
    for _ in range(args.warmup):
        arch_step(module, arch_optimizer, train, val)
        weight_step(module, train)
        if time.perf_counter() - warm_start > args.max_seconds:
            break  # a pathological setting (minutes per step): one warm-up step is enough
    times = []
    stat0, load0, t0, cpu0 = (
        proc_stat(),
        os.getloadavg()[0],
        time.perf_counter(),
        time.process_time(),
    )
    while len(times) < args.steps:
        start = time.perf_counter()
        arch_step(module, arch_optimizer, train, val)
        weight_step(module, train)
        times.append(time.perf_counter() - start)
        if len(times) >= 3 and time.perf_counter() - t0 > args.max_seconds:
            break
    stat1, wall, own = proc_stat(), time.perf_counter() - t0, time.process_time() - cpu0
    idle = idle_per_cpu(stat0, stat1)
    return {
        "setting": setting,
        "threads": torch.get_num_threads(),
        "threads_choice": choice.describe(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "channels_last": nhwc,
        "batch": n,
        "C": cfg.search_space.C,
        "layers": cfg.search_space.layers,
        "input_shape": list(cfg.data.input_shape),
        "warmup": args.warmup,
        "steps": len(times),
        "times_s": times,
        "median_s": statistics.median(times),
        "min_s": min(times),
        # while timing: idle fraction of each CPU, the CPUs this process used, and the CPUs the
        # rest of the machine used (busy CPUs minus this process's; the busy loop included)
        "idle_per_cpu_during": idle,
        "own_cpus_during": own / wall,
        "others_cpus_during": max(0.0, len(idle) - sum(idle.values()) - own / wall),
        "loadavg_1min_before": load0,
    }


# ---- driver ---------------------------------------------------------------------------------
def start_hog(cpu: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", str(cpu), sys.executable, "-c", "while True: pass"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_setting(setting: str, argv: list[str]) -> dict[str, Any] | None:
    env = dict(os.environ)
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"):
        env.pop(key, None)
    policy = setting.partition("+")[2]
    if policy.startswith("spin"):
        env["GOMP_SPINCOUNT"] = policy[4:]
    elif policy:
        env["OMP_WAIT_POLICY"] = policy.upper()
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", setting]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        print(f"{setting} worker failed (exit {proc.returncode})", file=sys.stderr)
        return None
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["process_wall_s"] = time.perf_counter() - start
    return row


def summarise(rows: list[dict[str, Any]], conditions, settings, model: str) -> list[dict[str, Any]]:
    out = []
    for cond in conditions:
        base = None
        for s in settings:
            rs = [r for r in rows if r["condition"] == cond and r["setting"] == s]
            if not rs:
                continue
            med = statistics.median(r["median_s"] for r in rs)
            if s == settings[0]:
                base = med
            others = [r["others_cpus_during"] for r in rs]
            out.append(
                {
                    "condition": cond,
                    "setting": s,
                    "cpu_model": model,
                    "threads": sorted({r["threads"] for r in rs}),
                    "runs": len(rs),
                    "median_step_s": med,
                    "runs_median_s": [r["median_s"] for r in rs],
                    "min_step_s": min(r["min_s"] for r in rs),
                    "epoch_s": med * STEPS_PER_EPOCH,
                    "vs_first_setting": med / base if base else None,
                    "others_cpus_during": statistics.median(others),
                    "own_cpus_during": statistics.median(r["own_cpus_during"] for r in rs),
                }
            )
    return out


def table(summary: list[dict[str, Any]], model: str) -> str:
    head = (
        f"{'condition':<10}{'setting':<14}{'thr':>5}{'runs':>5}{'median s/step':>14}"
        f"{'min s':>8}{'epoch s':>9}{'x 1st':>7}{'own CPUs':>9}{'others':>8}  CPU"
    )
    lines = [head, "-" * (len(head) + len(model))]
    for r in summary:
        thr = "/".join(str(t) for t in r["threads"])
        ratio = "" if r["vs_first_setting"] is None else f"{r['vs_first_setting']:.2f}"
        lines.append(
            f"{r['condition']:<10}{r['setting']:<14}{thr:>5}{r['runs']:>5}"
            f"{r['median_step_s']:>14.3f}{r['min_step_s']:>8.3f}{r['epoch_s']:>9.1f}"
            f"{ratio:>7}{r['own_cpus_during']:>9.2f}{r['others_cpus_during']:>8.2f}  {model}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--settings",
        default=DEFAULT_SETTINGS,
        help="comma list of <threads>[+passive|+active|+spin<N>], threads an integer, N (all "
        f"allowed CPUs) or auto; default {DEFAULT_SETTINGS}",
    )
    p.add_argument("--conditions", default="idle,shared", help="idle, shared or both")
    p.add_argument("--repeats", type=int, default=2, help="runs per setting and condition")
    p.add_argument("--steps", type=int, default=12, help="timed steps per run (at most)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=25.0,
        help="stop warming up (>= 1 step) and timing (>= 3 steps) a run after this",
    )
    p.add_argument("--hog-cpu", type=int, default=None, help="the busy loop's CPU (default: last)")
    p.add_argument(
        "--override", action="append", default=[], help="a Hydra override for the job (repeatable)"
    )
    p.add_argument("--out", default=None, help="JSON (default: results/shared_cores_cpu.json)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from nas.run.threads import allowed_cpus

    n = str(len(allowed_cpus()))
    args.settings = [s.strip().replace("N", n) for s in args.settings.split(",") if s.strip()]
    args.conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    for s in args.settings:
        threads, _, policy = s.partition("+")
        spin = policy.startswith("spin") and policy[4:].isdigit()
        if not (threads == "auto" or threads.isdigit()) or not (
            spin or policy in ("", "passive", "active")
        ):
            p.error(f"bad setting {s!r}: <int|auto>[+passive|+active|+spin<N>]")
    if set(args.conditions) - {"idle", "shared"}:
        p.error("--conditions: idle, shared")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    from nas.run.threads import allowed_cpus

    cpus = allowed_cpus()
    hog_cpu = cpus[-1] if args.hog_cpu is None else args.hog_cpu
    model = cpu_model()
    print(
        f"[shared_cores] {model}, CPUs {cpus}, busy loop on CPU {hog_cpu} when shared", flush=True
    )
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    rows = []
    for rep in range(args.repeats):
        for cond in args.conditions:
            hog = start_hog(hog_cpu) if cond == "shared" else None
            try:
                if hog:
                    time.sleep(0.5)
                order = args.settings if rep % 2 == 0 else args.settings[::-1]
                for s in order:
                    row = run_setting(s, argv)
                    if row is None:
                        continue
                    row.update(condition=cond, repeat=rep, cpu_model=model)
                    rows.append(row)
                    print(
                        f"  {cond:<7} {s:<13} threads {row['threads']}  median "
                        f"{row['median_s']:.3f} s/step over {row['steps']} steps  "
                        f"({row['threads_choice']}; CPUs used by it {row['own_cpus_during']:.2f}, "
                        f"by others {row['others_cpus_during']:.2f})",
                        flush=True,
                    )
            finally:
                if hog:
                    hog.kill()  # only the busy loop this bench started
                    hog.wait()
    summary = summarise(rows, args.conditions, args.settings, model)
    import torch

    meta = {
        "benchmark": "shared_cores",
        "command": " ".join(["python experiments/bench/shared_cores.py", *argv]),
        "what": "seconds per bilevel search step of the default job (first-order DARTS, C=8, "
        "5 cells, digits 8x8, batch 64, NHWC), idle vs a busy loop pinned to one CPU",
        "cpu_model": model,
        "cpus": cpus,
        "hog_cpu": hog_cpu,
        "torch": torch.__version__,
        "parallel_backend": torch.__config__.parallel_info().splitlines()[-1].strip(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0],
        "wall_s": time.perf_counter() - start,
        "steps_per_epoch": STEPS_PER_EPOCH,
    }
    out = (
        Path(args.out)
        if args.out
        else Path(__file__).resolve().parent / "results" / "shared_cores_cpu.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=2) + "\n")
    print(
        f"\n{model}, {len(cpus)} CPUs, torch {meta['torch']}, load average "
        f"{load_before:.1f} -> {meta['loadavg_1min_after']:.1f}, {meta['wall_s']:.0f} s"
    )
    print(table(summary, model))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
