"""Retrain throughput of the DARTS_V2 CIFAR network: images per second and peak memory.

One step is what ``RetrainModule`` does under Lightning's automatic optimization (Liu et al.,
ICLR 2019, sec. 3.3 / A.2): forward of the child network (C=36, 20 cells, auxiliary head after
the cell at 2/3 depth, drop path on every non-identity op), cross-entropy + 0.4 × auxiliary
cross-entropy, zero_grad, backward, gradient norm clipping at 5, SGD (lr 0.025, momentum 0.9,
weight decay 3e-4). The network and the module come from the composed Hydra config
(``retrain=darts_cifar``, ``data=cifar10``, ``genotype=darts_v2``) through ``nas.run.builders``;
drop path is held at its final value (0.2; during training it ramps from 0). Inputs are random
normal 32×32 images and random labels, one batch reused every step; no data pipeline (see
``data_pipeline.py`` for that), no Trainer, no logging.

    python experiments/bench/retrain_step.py --batch 32 --threads 1       # CPU
    python experiments/bench/retrain_step.py --device cuda                # GPU, batch 96
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
CONF_DIR = ROOT / "conf"
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from search_step import (  # noqa: E402
    device_name,
    environment,
    peak_memory_mb,
    resolve_channels_last,
    resolve_threads,
    sync,
)


def build(args: argparse.Namespace, device: torch.device):
    """The RetrainModule (child network inside) and its optimizer, as ``stage=retrain`` builds them."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from nas.core.genotype import resolve_genotype
    from nas.run import builders
    from nas.run.schema import register_configs

    register_configs()
    overrides = [
        "data=cifar10",
        f"data.input_shape=[3,{args.size},{args.size}]",
        f"data.num_classes={args.classes}",
        "retrain=darts_cifar",
        f"retrain.C={args.C}",
        f"retrain.layers={args.layers}",
        f"retrain.batch_size={args.batch}",
        f"retrain.drop_path={args.drop_path}",
        f"retrain.auxiliary={str(not args.no_auxiliary).lower()}",
        f"genotype={args.genotype}",
        f"seed={args.seed}",
        "logger=none",
        f"channels_last={str(args.channels_last).lower()}",
        f"compile={str(args.compile).lower()}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    space = builders.space_from_config(cfg)
    model = builders.child_network(cfg, space, resolve_genotype(cfg.genotype))
    module = builders.retrain_module(cfg, model).to(device)
    module.train()
    # RetrainModule.on_train_epoch_start sets drop_path * epoch / epochs; held at the final value.
    module.model.drop_path_prob = module.drop_path
    optimizer = instantiate(cfg.retrain.optimizer)(module.model.parameters())
    return module, optimizer


def train_step(module, optimizer: torch.optim.Optimizer, batch, autocast: bool) -> torch.Tensor:
    """``RetrainModule.training_step`` + Lightning's automatic optimization, without logging:
    loss (with the auxiliary head), zero_grad, backward, norm clipping, SGD step."""
    x, y = batch
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits, aux = module.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=module.label_smoothing)
        if aux is not None and module.auxiliary_weight:
            loss = loss + module.auxiliary_weight * F.cross_entropy(
                aux, y, label_smoothing=module.label_smoothing
            )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if module.grad_clip:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, module.grad_clip)
    optimizer.step()
    return loss.detach()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from nas.hardware.profile import count_macs, count_params

    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    module, optimizer = build(args, device)
    build_s = time.perf_counter() - start
    macs = count_macs(module.model, [3, args.size, args.size])  # per image, eval mode, no aux
    params = count_params(module.model)

    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(device)
    if args.channels_last:  # the data module's batches are NHWC then too
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, args.classes, (args.batch,), generator=gen).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    mem_before = peak_memory_mb(device)

    autocast = args.precision == "bf16-mixed"
    warmup_times, times = [], []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = train_step(module, optimizer, (x, y), autocast)
        sync(device)
        (warmup_times if i < args.warmup else times).append(time.perf_counter() - start)

    median = statistics.median(times)
    # Forward + backward ≈ 3 forwards; MACs of the main path only (the auxiliary head is small).
    train_flops_per_image = 3 * 2 * macs
    return {
        "network": f"{args.genotype} C={args.C} layers={args.layers}",
        "genotype": args.genotype,
        "C": args.C,
        "layers": args.layers,
        "size": args.size,
        "classes": args.classes,
        "auxiliary": not args.no_auxiliary,
        "drop_path": module.model.drop_path_prob,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "batch": args.batch,
        "params": params,
        "macs_per_image": macs,
        "warmup": args.warmup,
        "steps": args.steps,
        "median_s": median,
        "min_s": min(times),
        "times_s": times,
        "warmup_times_s": warmup_times,
        "images_per_s": args.batch / median,
        "achieved_gflop_per_s": train_flops_per_image * args.batch / median / 1e9,
        "peak_memory_mb": peak_memory_mb(device),
        "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "max_rss",
        "memory_before_steps_mb": mem_before,
        "threads": torch.get_num_threads(),
        "threads_choice": args.threads_choice,
        "device_name": device_name(args.device),
        "build_s": build_s,
        "last_loss": round(float(loss), 4),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    p.add_argument("--batch", type=int, default=96, help="DARTS' CIFAR retrain batch: 96")
    p.add_argument("--C", type=int, default=36)
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--genotype", default="darts_v2", help="zoo name or genotype.json")
    p.add_argument("--drop-path", type=float, default=0.2)
    p.add_argument("--no-auxiliary", action="store_true", help="drop the auxiliary head")
    p.add_argument("--precision", default="32", choices=["32", "bf16-mixed"])
    p.add_argument("--steps", type=int, default=7, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument(
        "--threads",
        default="auto",
        help="torch threads: auto (the config's default, nas/run/threads.py), N, or 0 (torch's default)",
    )
    p.add_argument("--cudnn-benchmark", action="store_true")
    p.add_argument(
        "--channels-last",
        nargs="?",
        const="true",
        default="auto",
        choices=["auto", "true", "false"],
        help="channels_last (NHWC model and batch): auto (the config's default) is NHWC on the "
        "CPU, NCHW on a GPU; a bare --channels-last is true",
    )
    p.add_argument(
        "--compile", action="store_true", help="compile=true (torch.compile of the child network)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON (default: results/retrain_step_<device>.json)")
    args = p.parse_args(argv)
    args.channels_last = resolve_channels_last(args.channels_last, args.device)
    try:
        args.threads, args.threads_choice = resolve_threads(args.threads, args.device)
    except ValueError as e:
        p.error(str(e))
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda asked for, but torch.cuda.is_available() is False")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    print(
        f"[retrain_step] batch {args.batch}: {args.warmup} warm-up + {args.steps} timed steps ..."
    )
    row = measure(args)
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    out = Path(args.out) if args.out else HERE / "results" / f"retrain_step_{kind}.json"
    meta = {
        "benchmark": "retrain_step",
        "command": " ".join(["python experiments/bench/retrain_step.py", *argv]),
        "what": "one DARTS CIFAR retrain step = forward (aux head, drop path) + backward + clip + SGD (RetrainModule without Lightning)",
        **environment(args.device, load_before),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": [row]}, indent=2) + "\n")

    print(
        f"\n{meta['device_name']} ({args.device}), torch {meta['torch']}, {row['threads']} threads, "
        f"load average {load_before:.1f} -> {meta['loadavg_1min_after']:.1f}"
    )
    print(
        f"{row['network']}: {row['params'] / 1e6:.2f} M params, "
        f"{row['macs_per_image'] / 1e6:.0f} M MACs/image, precision {row['precision']}"
    )
    head = f"{'batch':>6}{'median s':>10}{'min s':>8}{'img/s':>9}{'GFLOP/s':>9}{'peak MiB':>10}"
    head += f"{'1st step s':>12}  device"  # a compiled network's first step pays the cold compile
    first = (row["warmup_times_s"] or row["times_s"])[0]
    print(head + "\n" + "-" * len(head))
    print(
        f"{row['batch']:>6d}{row['median_s']:>10.3f}{row['min_s']:>8.3f}{row['images_per_s']:>9.1f}"
        f"{row['achieved_gflop_per_s']:>9.1f}{row['peak_memory_mb']:>10.0f}{first:>12.1f}"
        f"  {row['device_name']}"
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
