"""Images per second of the training data pipeline: on-device batches vs per-sample DataLoader.

CIFAR-shaped random uint8 data (3x32x32, 10 classes) goes through ``RetrainDataModule`` with the
DARTS CIFAR retrain augmentation (random crop with 4-pixel padding, horizontal flip,
normalization, cutout 16) in the two pipelines of ``nas/data/modules.py``:

* ``device``: uint8 gather by index, batch transferred as uint8, whole-batch augmentation on the
  device (``on_after_batch_transfer``); on CUDA also ``device+cache``: the arrays held in device
  memory, so gather and augmentation never leave the GPU.
* ``loader``: per-sample crop/flip/normalize/cutout (``nas/data/sample.py``) in DataLoader
  workers (``--workers``, 0 = main process), float batches collated and transferred.

A row times ``--batches`` training batches after ``--warmup`` untimed ones, from iterator to
augmented batch on the device (a device sync before each clock read).

    python experiments/bench/data_pipeline.py                     # CPU -> results/data_pipeline_cpu.json
    python experiments/bench/data_pipeline.py --device cuda       # -> results/data_pipeline_cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nas.data import ArraySplits, DataConfig, RetrainDataModule, register_dataset  # noqa: E402


def random_cifar(n: int):
    def load(cfg) -> ArraySplits:
        gen = torch.Generator().manual_seed(0)
        return ArraySplits(
            x_train=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen),
            y_train=torch.randint(0, 10, (n,), generator=gen),
            x_test=torch.zeros(1, 3, 32, 32, dtype=torch.uint8),
            y_test=torch.zeros(1, dtype=torch.long),
        )

    return load


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(pipeline: str, workers: int, cache: bool, args, device: torch.device) -> dict:
    cfg = DataConfig(
        name="bench_random_cifar",
        input_shape=[3, 32, 32],
        num_classes=10,
        mean=[0.4914, 0.4822, 0.4465],
        std=[0.2470, 0.2435, 0.2616],
        crop_padding=4,
        hflip=True,
        num_workers=workers,
        pipeline=pipeline,
    )
    module = RetrainDataModule(cfg, batch_size=args.batch, seed=0, cutout=16)
    module.setup()
    if cache:
        module.train_set.to(device)
    loader = module.train_dataloader()
    it = iter(loader)

    def step():
        batch = next(it)
        batch = tuple(t.to(device, non_blocking=True) if torch.is_tensor(t) else t for t in batch)
        x, _ = module.transform(batch, train=True)
        return x

    for _ in range(args.warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.batches):
        x = step()
    sync(device)
    seconds = time.perf_counter() - start
    assert x.dtype == torch.float32 and x.device.type == device.type
    name = f"{pipeline}+cache" if cache else pipeline
    return {
        "pipeline": name,
        "workers": workers if pipeline == "loader" else 0,
        "batch": args.batch,
        "batches": args.batches,
        "seconds": seconds,
        "images_per_s": args.batch * args.batches / seconds,
        "ms_per_batch": 1000 * seconds / args.batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--workers", default="0,1", help="loader worker counts, comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    register_dataset("bench_random_cifar", random_cifar(args.images), overwrite=True)

    rows = [measure("device", 0, False, args, device)]
    if device.type == "cuda":
        rows.append(measure("device", 0, True, args, device))
    for workers in [int(w) for w in args.workers.split(",")]:
        rows.append(measure("loader", workers, False, args, device))
    base = rows[0]["images_per_s"]
    print(f"{'pipeline':<14}{'workers':>8}{'img/s':>12}{'ms/batch':>10}{'vs device':>11}")
    for r in rows:
        r["speedup_of_device"] = base / r["images_per_s"]
        print(
            f"{r['pipeline']:<14}{r['workers']:>8}{r['images_per_s']:>12,.0f}"
            f"{r['ms_per_batch']:>10.2f}{r['images_per_s'] / base:>10.2f}x"
        )
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    meta = {
        "device": args.device,
        "device_name": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min": os.getloadavg()[0],
        "images": args.images,
        "augmentation": "crop 32 pad 4, hflip, normalize, cutout 16 (DARTS CIFAR retrain)",
        "args": vars(args),
    }
    out = Path(args.out or ROOT / f"experiments/bench/results/data_pipeline_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
