"""Small benchmark files in the real on-disk formats, for the readers in
``nas/estimate/benchmarks`` (the real files are GBs and cannot be downloaded here).

- ``write_nb201_pth``: NAS-Bench-201's ``torch.save``d dict (legacy, non-zip container, as the
  2020 files; numpy scalars under numpy 1.x's ``numpy.core`` module path, as those files name
  them): ``meta_archs``, ``evaluated_indexes``, ``arch2infos[i] = {"less", "full"}`` of
  ArchResults state dicts holding ResultsCount state dicts, every epoch's numbers.
- ``write_nats_dir`` / ``write_nats_pickle``: NATS-Bench's topology files with the same
  records (fast-mode directory of ``.pickle.pbz2`` files; one ``.pickle.pbz2``).
- ``write_hw_nas_bench``: HW-NAS-Bench's pickle (NAS-Bench-201 metrics per dataset as numpy
  arrays with a ``config`` listing; an FBNet block table).

Every value is a function of (architecture, dataset, eval set, seed, epoch) given here, so a
test states what a lookup must return: ``final_acc`` (the last epoch's accuracy of one trial),
``FLOPS``/``PARAMS``/``LATENCY_S``, ``hw_value``, ``fbnet_value``.
"""

from __future__ import annotations

import bz2
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

NB201_ARCHS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|skip_connect~0|+|none~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|",
    # Listed in meta_archs but never trained (no arch2infos entry).
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
)
EVALUATED = range(5)
NOT_EVALUATED = 5
# An architecture of the NB201 space absent from the fixture.
ABSENT = "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|"

EVAL_SETS = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("ori-test", "x-valid", "x-test"),
    "ImageNet16-120": ("ori-test", "x-valid", "x-test"),
}
CLASSES = {"cifar10-valid": 10, "cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
# Seeds per schedule, as in NAS-Bench-201-v1_1: the 12-epoch schedule trained cifar10-valid
# twice and the rest once; the fixture's 200-epoch schedule two seeds everywhere.
SEEDS = {
    "12": {"cifar10-valid": (111, 777), "cifar10": (111,), "cifar100": (111,),
           "ImageNet16-120": (111,)},
    "200": {d: (777, 888) for d in EVAL_SETS},
}  # fmt: skip
EPOCHS = {"12": 12, "200": 200}
HP_KEY_201 = {"12": "less", "200": "full"}

_DATASET_OFFSET = {"cifar10-valid": 0.0, "cifar10": 3.0, "cifar100": -20.0, "ImageNet16-120": -45.0}
_SET_OFFSET = {"x-valid": 0.0, "ori-test": 0.4, "x-test": 0.7}
_SEED_OFFSET = {111: 0.0, 777: 0.3, 888: 1.1}


def final_acc(index: int, dataset: str, eval_set: str, seed: int, hp: str) -> float:
    """One trial's accuracy (%) at the schedule's last epoch."""
    base = 80.0 if hp == "200" else 60.0
    return (
        base + 1.5 * index + _DATASET_OFFSET[dataset] + _SET_OFFSET[eval_set] + _SEED_OFFSET[seed]
    )


def acc_at(index: int, dataset: str, eval_set: str, seed: int, hp: str, epoch: int) -> float:
    """Every earlier epoch is lower: a reader that takes another epoch than the last is off."""
    epochs = EPOCHS[hp]
    return final_acc(index, dataset, eval_set, seed, hp) * (epoch + 1) / epochs - (
        epoch < epochs - 1
    )


def FLOPS(index: int, dataset: str) -> float:
    return {"ImageNet16-120": 30.0, "cifar100": 110.01}.get(dataset, 110.0) + index


def PARAMS(index: int, dataset: str) -> float:
    return {"ImageNet16-120": 0.82, "cifar100": 0.811}.get(dataset, 0.8) + 0.1 * index


def LATENCY_S(index: int, dataset: str) -> float:
    return 0.015 + 0.001 * index + (0.0005 if dataset == "ImageNet16-120" else 0.0)


def results_count(index: int, dataset: str, seed: int, hp: str, weights: bool = False) -> dict:
    """A ResultsCount state dict: the attributes of NAS-Bench-201's ``ResultsCount``."""
    epochs = EPOCHS[hp]
    eval_acc1es, eval_losses, eval_times = {}, {}, {}
    for name in EVAL_SETS[dataset]:
        for e in range(epochs):
            eval_acc1es[f"{name}@{e}"] = acc_at(index, dataset, name, seed, hp, e)
            eval_losses[f"{name}@{e}"] = 2.0 / (e + 1)
            eval_times[f"{name}@{e}"] = 0.5
    return {
        "name": dataset,
        "net_state_dict": OrderedDict(weight=torch.ones(2, 2)) if weights else None,
        "train_acc1es": {e: 50.0 + e * 0.1 for e in range(epochs)},
        "train_acc5es": None,
        "train_losses": {e: 1.0 / (e + 1) for e in range(epochs)},
        "train_times": OrderedDict((e, 10.0) for e in range(epochs)),
        "arch_config": {
            "channel": 16,
            "num_cells": 5,
            "arch_str": NB201_ARCHS[index],
            "class_num": CLASSES[dataset],
        },
        "params": np.float64(PARAMS(index, dataset)),
        "flop": float(FLOPS(index, dataset)),
        "seed": seed,
        "epochs": epochs,
        "latency": [np.float64(LATENCY_S(index, dataset))],
        "eval_names": list(EVAL_SETS[dataset]),
        "eval_acc1es": eval_acc1es,
        "eval_times": eval_times,
        "eval_losses": eval_losses,
    }


def arch_results(index: int, hp: str, weights: bool = False) -> dict:
    """An ArchResults state dict: ``arch_index``, ``arch_str``, ``all_results`` keyed by
    ``(dataset, seed)``, ``dataset_seed``, ``clear_net_done``. ``weights``: architecture 0's
    seed-777 trials keep a (tiny) trained state dict, a tensor in the ``.pth``."""
    seeds = SEEDS[hp]
    return {
        "arch_index": index,
        "arch_str": NB201_ARCHS[index],
        "all_results": {
            (d, s): results_count(index, d, s, hp, weights=weights and index == 0 and s == 777)
            for d in seeds
            for s in seeds[d]
        },
        "dataset_seed": {d: list(seeds[d]) for d in seeds},
        "clear_net_done": not (weights and index == 0),
    }


def _numpy1_names(data: bytes) -> bytes:
    """Protocol-2/3 GLOBAL opcodes naming numpy 2's ``numpy._core`` renamed to numpy 1.x's
    ``numpy.core`` (what the published files, written under numpy 1.x, name)."""
    return data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_nb201_pth(path: Path) -> Path:
    """NAS-Bench-201's ``.pth``: ``{"meta_archs", "arch2infos", "evaluated_indexes"}``."""
    data = {
        "meta_archs": list(NB201_ARCHS),
        "arch2infos": {
            i: {HP_KEY_201[hp]: arch_results(i, hp, weights=True) for hp in ("12", "200")}
            for i in EVALUATED
        },
        "evaluated_indexes": list(EVALUATED),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    assert b"cnumpy._core.multiarray\n" in raw  # protocol 2: GLOBAL opcodes, patched below
    path.write_bytes(_numpy1_names(raw))
    return path


def _pbz2(obj, path: Path) -> None:
    with bz2.BZ2File(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)  # NATS-Bench's pickle_save protocol


def write_nats_dir(directory: Path) -> Path:
    """NATS-Bench's fast-mode directory: ``meta.pickle.pbz2`` and ``{index:06d}.pickle.pbz2``."""
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "meta_archs": list(NB201_ARCHS),
        "total_archs": len(NB201_ARCHS),
        "arch2infos": None,
        "evaluated_indexes": set(),
    }
    _pbz2(meta, directory / "meta.pickle.pbz2")
    for i in EVALUATED:
        record = OrderedDict((hp, arch_results(i, hp)) for hp in ("12", "200"))
        _pbz2(record, directory / f"{i:06d}.pickle.pbz2")
    return directory


def write_nats_pickle(path: Path) -> Path:
    """NATS-Bench's single file: the ``.pth``'s dict with hp keys ``"12"``/``"200"``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "meta_archs": list(NB201_ARCHS),
        "arch2infos": {i: {hp: arch_results(i, hp) for hp in ("12", "200")} for i in EVALUATED},
        "evaluated_indexes": set(EVALUATED),
    }
    _pbz2(data, path)
    return path


# HW-NAS-Bench.
HW_NB201_METRICS = (
    "edgegpu_latency", "edgegpu_energy", "raspi4_latency", "edgetpu_latency", "pixel3_latency",
    "eyeriss_latency", "eyeriss_energy", "eyeriss_arithmetic_intensity", "fpga_latency",
    "fpga_energy",
)  # fmt: skip
HW_FBNET_METRICS = (
    "edgegpu_latency", "edgegpu_energy", "raspi4_latency", "pixel3_latency", "eyeriss_latency",
    "eyeriss_energy", "fpga_latency", "fpga_energy",
)  # fmt: skip
HW_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")


def hw_value(index: int, dataset: str, metric: str) -> float:
    return (index + 1) * (HW_NB201_METRICS.index(metric) + 1) + HW_DATASETS.index(dataset) * 0.25


# FBNet's macro network, written out layer by layer (H = W, C_in, C_out, stride) from the FBNet
# paper's table (stem 16; stages 16x1, 24x4, 32x4, 64x4, 112x4, 184x4, 352x1) and
# HW-NAS-Bench's strides per dataset.
def _stage(h: int, c_in: int, c: int, stride: int, n: int) -> list[tuple[int, int, int, int]]:
    return [(h, c_in, c, stride)] + [(h // stride, c, c, 1)] * (n - 1)


FBNET_LAYOUT = {
    "cifar100": {
        "stem": "ConvNorm_H32_W32_Cin3_Cout16_kernel3_stride1_group1",
        "layers": _stage(32, 16, 16, 1, 1) + _stage(32, 16, 24, 1, 4) + _stage(32, 24, 32, 2, 4)
        + _stage(16, 32, 64, 2, 4) + _stage(8, 64, 112, 1, 4) + _stage(8, 112, 184, 2, 4)
        + _stage(4, 184, 352, 1, 1),
        "tail": ["ConvNorm_H4_W4_Cin352_Cout1504_kernel1_stride1_group1",
                 "AvgP_H4_W4_Cin1504_Cout1504_kernel4_stride1", "FC_Cin1504_Cout100"],
    },
    "ImageNet": {
        "stem": "ConvNorm_H224_W224_Cin3_Cout16_kernel3_stride2_group1",
        "layers": _stage(112, 16, 16, 1, 1) + _stage(112, 16, 24, 2, 4)
        + _stage(56, 24, 32, 2, 4) + _stage(28, 32, 64, 2, 4) + _stage(14, 64, 112, 1, 4)
        + _stage(14, 112, 184, 2, 4) + _stage(7, 184, 352, 1, 1),
        "tail": ["ConvNorm_H7_W7_Cin352_Cout1984_kernel1_stride1_group1",
                 "AvgP_H7_W7_Cin1984_Cout1984_kernel7_stride1", "FC_Cin1984_Cout1000"],
    },
}  # fmt: skip
# (expansion, kernel, group) of FBNet's 8 blocks, HW-NAS-Bench's op indices 0..7; 8 = skip.
FBNET_CONV = (
    (1, 3, 1),
    (1, 3, 2),
    (3, 3, 1),
    (6, 3, 1),
    (1, 5, 1),
    (1, 5, 2),
    (3, 5, 1),
    (6, 5, 1),
)
# Value of one table entry by kind, so a sum tells how many of each the reader added.
FBNET_KIND_VALUE = {"ConvBlock": 1.0, "Skip": 100.0, "ConvNorm": 10_000.0, "AvgP": 1e6, "FC": 1e7}


def fbnet_value(key: str, metric: str) -> float:
    return FBNET_KIND_VALUE[key.split("_")[0]] * (HW_FBNET_METRICS.index(metric) + 1)


def fbnet_keys() -> set[str]:
    keys = set()
    for layout in FBNET_LAYOUT.values():
        keys.add(layout["stem"])
        keys.update(layout["tail"])
        for h, c_in, c, s in layout["layers"]:
            keys.add(f"Skip_H{h}_W{h}_Cin{c_in}_Cout{c}_stride{s}")
            for e, k, g in FBNET_CONV:
                keys.add(
                    f"ConvBlock_H{h}_W{h}_Cin{c_in}_Cout{c}_exp{e}_kernel{k}_stride{s}_group{g}"
                )
    return keys


def write_hw_nas_bench(path: Path, with_config: bool = True, with_fbnet: bool = True) -> Path:
    """HW-NAS-Bench's pickle: ``{"nasbench201": {dataset: {metric: array, "config": [...]}},
    "fbnet": {metric: {block key: value}}}`` (indexed like ``NB201_ARCHS``)."""
    n = len(NB201_ARCHS)
    section = {}
    for d in HW_DATASETS:
        metrics: dict = {
            m: np.array([hw_value(i, d, m) for i in range(n)]) for m in HW_NB201_METRICS
        }
        if with_config:
            metrics["config"] = [
                {"name": "infer.tiny", "C": 16, "N": 5, "arch_str": a, "num_classes": c}
                for a, c in zip(NB201_ARCHS, [CLASSES[d]] * n)
            ]
        section[d] = metrics
    data: dict = {"nasbench201": section}
    if with_fbnet:
        keys = fbnet_keys()
        data["fbnet"] = {m: {k: fbnet_value(k, m) for k in sorted(keys)} for m in HW_FBNET_METRICS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_numpy1_names(pickle.dumps(data, protocol=3)))  # 2021: Python 3.6's default
    return path


def write_unsafe_pickle(path: Path, marker: Path) -> Path:
    """A pickle that would create ``marker`` if a reader executed it (it must be refused)."""

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path.write_bytes(pickle.dumps({"meta_archs": [Boom()]}, protocol=2))
    return path
