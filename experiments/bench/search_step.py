"""Seconds per bilevel search step of the DARTS CIFAR supernet: DARTS first and second order,
GDAS and PC-DARTS.

One step is what ``SearchModule.training_step`` does (Liu et al., DARTS, ICLR 2019, Alg. 1): an
architecture step on a validation batch (the strategy's arch-gradient mode, then Adam on α),
then a weight step on a training batch (cross-entropy, backward, norm clipping, SGD); the
benchmark calls the module's own ``arch_step`` and ``weight_step``. The
``SearchModule`` is built from the composed Hydra config (``strategy=darts`` / ``darts_2nd`` /
``gdas`` / ``pcdarts``, ``data=cifar10``: the paper's optimizers and hyperparameters) and stepped
directly, without Lightning's Trainer loop, so the numbers are the algorithm's cost and not the
loop's. Two departures from a real search, both so every timed step is a full bilevel step:
``strategy.arch_start_epoch=0`` (PC-DARTS' α warm-up of 15 epochs would otherwise make the
timed steps weight-only), and the strategy's schedules are set to epoch 0 of ``--epochs``
(GDAS: τ = 10).

Batch per mode: ``--batch N`` for every mode, ``--batch first=64,pcdarts=256`` per mode, or
``--batch paper`` for the papers' batch sizes (:data:`PAPER_BATCH`: 64 for DARTS and GDAS, 256
for PC-DARTS). The default is 16 on CPU and ``paper`` on CUDA.

Each mode runs in its own subprocess so the peak memory of one does not hide the other's.

Defaults are what ``python train.py`` runs: ``channels_last=auto`` (NHWC on the CPU) and
``threads=auto``; 2 warm-up and 7 timed steps per mode (the median is reported).

    python experiments/bench/search_step.py                        # CPU, batch 16, first+second
    python experiments/bench/search_step.py --modes gdas,pcdarts --threads 1
    python experiments/bench/search_step.py --device cuda --modes first,second,gdas,pcdarts
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = ROOT / "conf"
STRATEGIES = {"first": "darts", "second": "darts_2nd", "gdas": "gdas", "pcdarts": "pcdarts"}
# The papers' search batch sizes on CIFAR-10 (train and val batch each): DARTS (Liu et al., ICLR
# 2019) 64 both orders; GDAS (Dong & Yang, CVPR 2019) 64; PC-DARTS (Xu et al., ICLR 2020) 256.
PAPER_BATCH = {"first": 64, "second": 64, "gdas": 64, "pcdarts": 256}
CPU_BATCH = 16

if str(ROOT) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from experiments.bench.machine import cpu_model  # noqa: E402

Batch = tuple[torch.Tensor, torch.Tensor]


# ---- the module and the step ----------------------------------------------------------------
def build(mode: str, args: argparse.Namespace, device: torch.device):
    """The SearchModule and its α optimizer, exactly as ``stage=search`` configures them
    (with ``arch_start_epoch=0`` and the schedules at epoch 0, see the module docstring)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from nas.run import builders
    from nas.run.schema import register_configs

    register_configs()
    overrides = [
        f"strategy={STRATEGIES[mode]}",
        "data=cifar10",
        f"data.input_shape=[3,{args.size},{args.size}]",
        f"data.num_classes={args.classes}",
        f"search_space.C={args.C}",
        f"search_space.layers={args.layers}",
        f"search_space.kernel={args.kernel}",
        f"compile={str(args.compile).lower()}",
        f"compile_scope={args.compile_scope}",
        f"compile_mode={args.compile_mode}",
        f"cuda_graph={str(args.cuda_graph).lower()}",
        f"search_space.group_edges={str(args.group_edges).lower()}",
        f"search_space.batch_norm_kernel={args.batch_norm_kernel}",
        f"search_space.depthwise_kernel={args.depthwise_kernel}",
        f"search_space.pointwise_kernel={args.pointwise_kernel}",
        f"channels_last={str(args.channels_last).lower()}",
        f"strategy.batch_size={args.batch[mode]}",
        "strategy.arch_start_epoch=0",
        f"seed={args.seed}",
        f"nonfinite={args.nonfinite}",
        "logger=none",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    space = builders.space_from_config(cfg)
    module = builders.search_module(cfg, space).to(device)
    module.train()
    # What Lightning's on_train_epoch_start does at the first epoch (GDAS: τ = tau_max).
    module.strategy.on_epoch_start(0, args.epochs, module)
    # Lightning's configure_optimizers builds the α optimizer like this; the weight optimizer is
    # the module's standalone one (built on first access, after the move to the device).
    arch_optimizer = instantiate(cfg.strategy.arch_optimizer)(module.arch.parameters())
    _ = module.weight_optimizer
    return module, arch_optimizer


def arch_step(
    module, arch_optimizer: torch.optim.Optimizer, train: Batch, val: Batch, batch_idx: int = 0
) -> torch.Tensor | None:
    """The first half of ``SearchModule.training_step``: ``SearchModule.arch_step`` when
    ``arch_step_due`` (the same code: α gradient by the strategy, Adam on α, the strategy's
    ``after_arch_step``; with ``nonfinite=skip`` a non-finite loss or α gradient skips it).
    Returns the validation loss, detached and not read (no host sync), or None when the
    strategy learns no α, during the α warm-up or between ``arch_every`` steps.
    """
    if not module.arch_step_due(batch_idx):
        return None
    return module.arch_step(train, val, arch_optimizer).loss


def weight_step(module, train: Batch) -> torch.Tensor:
    """The second half: ``SearchModule.weight_step`` with the module's weight optimizer (the
    strategy's α for the weight step, e.g. SDARTS' perturbation; cross-entropy with the
    strategy's label smoothing, backward, norm clipping, SGD). Returns the training loss,
    detached and not read (also when ``nonfinite=skip`` skipped the step).
    """
    return module.weight_step(train, module.weight_optimizer).loss


def search_step(
    module, arch_optimizer: torch.optim.Optimizer, train: Batch, val: Batch, batch_idx: int = 0
) -> dict[str, torch.Tensor | None]:
    """One bilevel step: ``SearchModule.training_step`` minus Lightning's metric logging."""
    val_loss = arch_step(module, arch_optimizer, train, val, batch_idx)
    return {"val_loss": val_loss, "train_loss": weight_step(module, train)}


def precision(args: argparse.Namespace, device: torch.device):
    """``trainer.precision=bf16-mixed``: Lightning runs ``training_step`` (backward included)
    under bf16 autocast; the benchmark runs each half of the step under it."""
    if args.bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def graph_captures(module) -> int | None:
    """Graph pairs ``cuda_graph=true`` captured (2 in steady state: arch and weight step)."""
    graphs = module.supernet_graphs
    return None if graphs is None else graphs.captures


# ---- measuring ------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """GPU: the allocator's peak; CPU: the process's peak resident set (ru_maxrss is KiB on Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Builds the module, warms up, times ``args.steps`` steps; one result row."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    module, arch_optimizer = build(mode, args, device)
    build_s = time.perf_counter() - start
    n_weights = sum(p.numel() for p in module.supernet.parameters())

    gen = torch.Generator().manual_seed(args.seed)

    n = args.batch[mode]

    def batch() -> Batch:
        x = torch.randn(n, 3, args.size, args.size, generator=gen)
        y = torch.randint(0, args.classes, (n,), generator=gen)
        if args.channels_last:  # the data module's batches are NHWC then too
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(device), y.to(device)

    train, val = batch(), batch()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before_mb = peak_memory_mb(device)

    warmup_times = []
    for _ in range(args.warmup):
        start = time.perf_counter()
        with precision(args, device):
            search_step(module, arch_optimizer, train, val)
        sync(device)
        warmup_times.append(time.perf_counter() - start)

    # The step is search_step's two halves with a device sync between them, so each half can be
    # timed; the sync costs nothing on CPU and one pipeline drain on GPU.
    times, arch_times, weight_times = [], [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        with precision(args, device):
            val_loss = arch_step(module, arch_optimizer, train, val)
        sync(device)
        mid = time.perf_counter()
        with precision(args, device):
            train_loss = weight_step(module, train)
        sync(device)
        end = time.perf_counter()
        times.append(end - start)
        arch_times.append(mid - start)
        weight_times.append(end - mid)

    median = statistics.median(times)
    losses = {"val": None if val_loss is None else round(float(val_loss), 4)}
    losses["train"] = round(float(train_loss), 4)
    return {
        "mode": mode,
        "kernel": args.kernel,
        "compile": args.compile,
        "compile_scope": args.compile_scope if args.compile else None,
        "compile_mode": args.compile_mode if args.compile else None,
        "cuda_graph": args.cuda_graph,
        "precision": "bf16-mixed" if args.bf16 else "32",
        "group_edges": args.group_edges,
        "batch_norm_kernel": args.batch_norm_kernel,
        "depthwise_kernel": args.depthwise_kernel,
        "pointwise_kernel": args.pointwise_kernel,
        "channels_last": args.channels_last,
        "graph_captures": graph_captures(module),
        "strategy": STRATEGIES[mode],
        "batch": n,
        "C": args.C,
        "layers": args.layers,
        "size": args.size,
        "classes": args.classes,
        "supernet_weights": n_weights,
        "warmup": args.warmup,
        "steps": args.steps,
        "median_s": median,
        "min_s": min(times),
        "times_s": times,
        "arch_median_s": statistics.median(arch_times),
        "weight_median_s": statistics.median(weight_times),
        "warmup_times_s": warmup_times,
        # The first step pays for cold compilation (compile=true) and lazy initialisation.
        "first_step_s": warmup_times[0] if warmup_times else float("nan"),
        "train_images_per_s": n / median,
        "peak_memory_mb": peak_memory_mb(device),
        "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "max_rss",
        "memory_before_steps_mb": rss_before_mb,
        "threads": torch.get_num_threads(),
        "threads_choice": args.threads_choice,
        "device_name": device_name(args.device),
        "build_s": build_s,
        "loadavg_1min_after": os.getloadavg()[0],
        "last_losses": losses,
        "nonfinite": args.nonfinite,
        "skipped_steps": module.skipped_steps,
        "arch_start_epoch": module.arch_start_epoch,
        "epochs": args.epochs,
    }


def environment(device: str, load_before: float) -> dict[str, Any]:
    """Where a benchmark ran: device, versions, date and the CPU load around the run.

    Other processes share the CPU: a 1-minute load average well above the core count means the
    timings include waiting for cores.
    """
    return {
        "device": device,
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0],
    }


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


# ---- command line ---------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--batch",
        default=None,
        help="images per batch (train and val each): N, 'paper', or per mode 'first=64,pcdarts=256' "
        f"(unlisted modes: the paper's); default {CPU_BATCH} on CPU, 'paper' on CUDA",
    )
    p.add_argument("--C", type=int, default=16, help="initial channels of the supernet")
    p.add_argument("--layers", type=int, default=8, help="search cells")
    p.add_argument("--size", type=int, default=32, help="input height and width")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=7, help="timed steps per mode (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument(
        "--modes", default="first,second", help=f"comma list of: {', '.join(STRATEGIES)}"
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=50,
        help="search epochs the schedules assume (step at epoch 0)",
    )
    p.add_argument(
        "--nonfinite",
        default="stop",
        choices=["stop", "skip"],
        help="the config's nonfinite: skip adds the opt-in finiteness checks (host reads)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    p.add_argument(
        "--threads",
        default="auto",
        help="torch threads: auto (the config's default: as many as CPUs are idle at the start, "
        "nas/run/threads.py), N, or 0 (torch's default)",
    )
    p.add_argument(
        "--cudnn-benchmark", action="store_true", help="off by default, like train.py's Trainer"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kernel", default="torch", help="mixed-op backend: torch | triton | auto")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the supernet (compile=true)"
    )
    p.add_argument(
        "--compile-scope",
        default="edge",
        choices=["edge", "model"],
        help="compile_scope: edge (one graph per edge shape, shared) | model (one graph)",
    )
    p.add_argument(
        "--compile-mode",
        default="default",
        choices=["default", "reduce-overhead", "max-autotune"],
        help="compile_mode (reduce-overhead: CUDA graphs on a GPU)",
    )
    p.add_argument(
        "--no-group-edges",
        dest="group_edges",
        action="store_false",
        help="search_space.group_edges=false: every edge's candidates run on their own",
    )
    p.add_argument(
        "--batch-norm-kernel",
        default="torch",
        choices=["torch", "triton"],
        help="search_space.batch_norm_kernel: the grouped edge ops' batch norm",
    )
    p.add_argument(
        "--depthwise-kernel",
        default="torch",
        choices=["torch", "triton"],
        help="search_space.depthwise_kernel: the grouped edge ops' depthwise convolutions",
    )
    p.add_argument(
        "--pointwise-kernel",
        default="auto",
        choices=["auto", "conv", "matmul"],
        help="search_space.pointwise_kernel: the grouped edge ops' 1x1 convolutions "
        "(auto: matmul on the CPU, conv on a GPU)",
    )
    p.add_argument(
        "--channels-last",
        nargs="?",
        const="true",
        default="auto",
        choices=["auto", "true", "false"],
        help="channels_last: NHWC memory format for the supernet and the batches; auto (the "
        "config's default): NHWC on the CPU, NCHW on a GPU; a bare --channels-last is true",
    )
    p.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast around the step, as trainer.precision=bf16-mixed",
    )
    p.add_argument(
        "--cuda-graph",
        action="store_true",
        help="cuda_graph=true: the supernet's passes replayed as CUDA graphs (GPU only)",
    )
    p.add_argument(
        "--out", default=None, help="JSON path (default: results/search_step_<device>.json)"
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run the modes in this process (shared peak memory)",
    )
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in STRATEGIES]
    if bad:
        p.error(f"unknown mode(s) {bad}; valid: {', '.join(STRATEGIES)}")
    try:
        args.batch = parse_batch(args.batch, args.device)
    except ValueError as e:
        p.error(str(e))
    args.channels_last = resolve_channels_last(args.channels_last, args.device)
    try:
        args.threads, args.threads_choice = resolve_threads(args.threads, args.device)
    except ValueError as e:
        p.error(str(e))
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda asked for, but torch.cuda.is_available() is False")
    if args.cuda_graph and not args.device.startswith("cuda"):
        p.error("--cuda-graph captures CUDA graphs: it needs --device cuda")
    return args


def resolve_channels_last(value: str | bool, device: str) -> bool:
    """``--channels-last auto|true|false`` as the config's ``channels_last``: auto is NHWC on the
    CPU (what ``python train.py`` runs there) and NCHW on a GPU."""
    if isinstance(value, bool):
        return value
    return not device.startswith("cuda") if value == "auto" else value == "true"


def resolve_threads(value: str | int, device: str) -> tuple[int, str]:
    """``--threads``: the thread count to set (0: leave torch's default) and how it was chosen.
    ``auto`` is the config's default, ``nas.run.threads``' rule: as many threads as CPUs are idle
    now (1 on a 2-core machine where another job holds a core)."""
    from nas.run import threads

    if str(value) == "0":
        return 0, "torch's default"
    parsed = threads.parse(value)
    if parsed == "auto" and not device.startswith("cuda"):
        cpus = threads.allowed_cpus()
        idle, source = threads.measure_idle(cpus)
        n = threads.threads_for(idle, len(cpus), torch.get_num_threads())
        return n, f"auto: {idle:.1f} of {len(cpus)} CPUs idle ({source})"
    if parsed == "auto" or parsed is None:
        return 0, "torch's default"
    return parsed, f"--threads {parsed}"


def parse_batch(spec: str | None, device: str) -> dict[str, int]:
    """``--batch``: a batch size per mode."""
    if spec is None:
        spec = "paper" if device.startswith("cuda") else str(CPU_BATCH)
    if spec == "paper":
        return dict(PAPER_BATCH)
    if "=" not in spec:
        return dict.fromkeys(STRATEGIES, int(spec))
    out = dict(PAPER_BATCH)
    for item in spec.split(","):
        mode, _, n = item.partition("=")
        if mode.strip() not in STRATEGIES:
            raise ValueError(f"--batch: unknown mode {mode!r}")
        out[mode.strip()] = int(n)
    return out


def run_worker(mode: str, argv: list[str]) -> dict[str, Any] | None:
    """Runs one mode in a fresh interpreter; its last stdout line is the JSON row."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", mode]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        print(f"{mode} worker failed (exit {proc.returncode})", file=sys.stderr)
        return None  # the other modes still run and are written
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("mode", "mode", "<8", ""),
        ("strategy", "strategy", "<10", ""),
        ("batch", "batch", ">6", "d"),
        ("kernel", "kernel", ">7", ""),
        ("threads", "thr", ">4", "d"),
        ("median_s", "median s", ">9", ".3f"),
        ("min_s", "min s", ">8", ".3f"),
        ("arch_median_s", "arch s", ">8", ".3f"),
        ("weight_median_s", "weight s", ">9", ".3f"),
        ("train_images_per_s", "img/s", ">7", ".1f"),
        ("peak_memory_mb", "peak MiB", ">9", ".0f"),
        ("first_step_s", "1st step s", ">11", ".1f"),
        ("device_name", "  device", "", ""),
    ]
    head = "".join(f"{title:{align}}" for _, title, align, _ in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        r = {**r, "device_name": "  " + r.get("device_name", "?")}
        lines.append("".join(f"{r[key]:{align}{fmt}}" for key, _, align, fmt in cols))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args)))
        return

    load_before = os.getloadavg()[0]
    rows, failed = [], []
    for mode in args.modes:
        print(
            f"[search_step] {STRATEGIES[mode]}, batch {args.batch[mode]}: "
            f"{args.warmup} warm-up + {args.steps} timed steps ...",
            flush=True,
        )
        row = measure(mode, args) if args.in_process else run_worker(mode, argv)
        if row is None:
            failed.append(mode)
        else:
            rows.append(row)

    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    out = (
        Path(args.out)
        if args.out
        else Path(__file__).resolve().parent / "results" / f"search_step_{kind}.json"
    )
    meta = {
        "benchmark": "search_step",
        "command": " ".join(["python experiments/bench/search_step.py", *argv]),
        "what": "one bilevel search step = arch step on a val batch + weight step on a train batch (SearchModule.training_step without Lightning)",
        **environment(args.device, load_before),
        "in_process": args.in_process,
        "failed_modes": failed,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")

    print(
        f"\n{meta['device_name']} ({args.device}, {meta['cpu_count']} CPUs), torch {meta['torch']}, "
        f"load average {load_before:.1f} -> {meta['loadavg_1min_after']:.1f}"
    )
    print(table(rows))
    print(f"\nwrote {out}")
    if failed:
        raise SystemExit(f"failed modes: {', '.join(failed)} (their errors are above)")


if __name__ == "__main__":
    main()
