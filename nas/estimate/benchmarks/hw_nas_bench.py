"""The ``hw_nas_bench`` estimator: measured and simulated hardware costs from HW-NAS-Bench
(Li et al., "HW-NAS-Bench: Hardware-Aware Neural Architecture Search Benchmark", ICLR 2021).

HW-NAS-Bench measured (edge GPU, Raspberry Pi 4, Edge TPU, Pixel 3) or simulated (Eyeriss,
FPGA) the latency and energy of every NAS-Bench-201 cell on its three datasets, and of the
blocks of the FBNet space. A found cell's real-device cost is what a hardware-aware search
claims to optimise; our own cost model (``nas/hardware``) only estimates it.

The file, ``HW-NAS-Bench-v1_0.pickle`` (path from the estimator's ``file`` option or the
``HW_NAS_BENCH_FILE`` environment variable), is a plain pickle; its structure, read from the
official ``hw_nas_bench_api/hw_nas_bench_api.py``::

    {"nasbench201": {dataset: {metric: sequence indexed by the NAS-Bench-201 index,
                               "config": [{"name", "C", "N", "arch_str", "num_classes"}, ...]}},
     "fbnet": {metric: {"<block key>": value}}}

with datasets ``cifar10``, ``cifar100``, ``ImageNet16-120`` and metrics ``NB201_METRICS``
(latencies in ms, energies in mJ). The arch string of an index comes from ``config`` (the
file's own listing); a file without it takes the index from the NAS-Bench-201 file
(``search_space.benchmark_file`` / ``NASBENCH201_FILE``).

FBNet (Wu et al., CVPR 2019) architectures are 22 op indices into ``FBNET_OPS`` over FBNet's
fixed macro network (``FBNET_STAGES``); HW-NAS-Bench stores a per-block table, and a network's
cost is the sum of its stem, 22 blocks, head, pooling and classifier entries
(``fbnet_metrics``). Our ``mbconv`` space does not map onto it: its ops are ProxylessNAS'
(3/5/7 kernels × expansion 3/6, no e1 or grouped blocks, 7x7 kernels FBNet lacks) and its
layouts' widths and depths (24/40/80/96..., ``layers`` per stage) are not FBNet's
(16/24/32/64/112/184/352, 1/4/4/4/4/4/1), so the table has no entry for its blocks. The
estimator applies to ``nb201`` only; ``fbnet_metrics`` is there for FBNet-encoded
architectures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.estimate.base import Estimator, register_estimator
from nas.estimate.benchmarks import nb201_file
from nas.estimate.benchmarks.files import (
    UnsupportedFile,
    env_path,
    file_key,
    file_sha256,
    load_pickle,
    one_line,
)
from supernet.genotypes import GenotypeBase
from supernet.spaces.base import SearchSpace
from supernet.spaces.nb201 import NB201Space

ENV_FILE = "HW_NAS_BENCH_FILE"
NB201_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
NB201_METRICS = (
    "edgegpu_latency",
    "edgegpu_energy",
    "raspi4_latency",
    "edgetpu_latency",
    "pixel3_latency",
    "eyeriss_latency",
    "eyeriss_energy",
    "eyeriss_arithmetic_intensity",
    "fpga_latency",
    "fpga_energy",
)
# FBNet's table has no Edge TPU latency and no Eyeriss arithmetic intensity.
FBNET_METRICS = tuple(
    m for m in NB201_METRICS if m not in ("edgetpu_latency", "eyeriss_arithmetic_intensity")
)
FBNET_DATASETS = ("cifar100", "ImageNet")
# FBNet's 9 choices per layer, in HW-NAS-Bench's index order: name -> (kernel, expansion,
# groups) of the MBConv block; the last is the skip (None).
FBNET_BLOCKS: dict[str, tuple[int, int, int] | None] = {
    "k3_e1": (3, 1, 1), "k3_e1_g2": (3, 1, 2), "k3_e3": (3, 3, 1), "k3_e6": (3, 6, 1),
    "k5_e1": (5, 1, 1), "k5_e1_g2": (5, 1, 2), "k5_e3": (5, 3, 1), "k5_e6": (5, 6, 1),
    "skip": None,
}  # fmt: skip
FBNET_OPS = tuple(FBNET_BLOCKS)
FBNET_STEM = 16
FBNET_STAGES = ((16, 1), (24, 4), (32, 4), (64, 4), (112, 4), (184, 4), (352, 1))  # (C, layers)
FBNET_LAYERS = sum(n for _, n in FBNET_STAGES)  # 22
# Per dataset: input side, stem stride, each stage's first stride, head width, classes.
FBNET_MACRO = {
    "cifar100": (32, 1, (1, 1, 2, 2, 1, 2, 1), 1504, 100),
    "ImageNet": (224, 2, (1, 2, 2, 2, 1, 2, 1), 1984, 1000),
}


def metric_field(dataset: str, metric: str) -> str:
    """``<dataset>_<metric>_<unit>``: ms for latencies, mJ for energies."""
    unit = "_ms" if metric.endswith("latency") else "_mJ" if metric.endswith("energy") else ""
    return f"{dataset}_{metric}{unit}"


@dataclass
class HWTable:
    """A HW-NAS-Bench file's contents: per dataset, per metric, one value per NAS-Bench-201
    index; the arch string -> index listing (from ``config``, may be empty); FBNet's block
    table (None where the file has none)."""

    path: Path
    sha256: str
    nb201: dict[str, dict[str, np.ndarray]]
    nb201_index: dict[str, int]
    fbnet: Mapping[str, Mapping[str, float]] | None


def _config_index(configs: Any) -> dict[str, int]:
    items = configs.items() if isinstance(configs, Mapping) else enumerate(configs)
    return {c["arch_str"]: int(i) for i, c in items if isinstance(c, Mapping) and "arch_str" in c}


def _read(path: Path) -> HWTable:
    data = load_pickle(path)
    section = data.get("nasbench201") if isinstance(data, Mapping) else None
    if not isinstance(section, Mapping):
        raise UnsupportedFile(f"{path.name} is not HW-NAS-Bench's pickle (no 'nasbench201' dict)")
    nb201: dict[str, dict[str, np.ndarray]] = {}
    index: dict[str, int] = {}
    for dataset, metrics in section.items():
        if not isinstance(metrics, Mapping):
            raise UnsupportedFile(f"{path.name}: nasbench201[{dataset!r}] is not a dict")
        try:
            nb201[dataset] = {
                m: np.asarray(metrics[m], dtype=np.float64) for m in NB201_METRICS if m in metrics
            }
        except (TypeError, ValueError) as err:
            raise UnsupportedFile(
                f"{path.name}: nasbench201[{dataset!r}]: {one_line(err)}"
            ) from None
        if not index and "config" in metrics:
            index = _config_index(metrics["config"])
    fbnet = data.get("fbnet")
    return HWTable(
        path, file_sha256(path), nb201, index, fbnet if isinstance(fbnet, Mapping) else None
    )


_TABLES: dict[tuple[str, int, int], HWTable] = {}


def load_hw_table(path: str | Path) -> HWTable:
    """The table of a HW-NAS-Bench pickle, read once per process (per path, size, mtime).
    ``FileNotFoundError`` / ``UnsupportedFile`` for a missing file / another format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HW-NAS-Bench file {path} does not exist")
    key = file_key(path)
    if key not in _TABLES:
        for stale in [k for k in _TABLES if k[0] == key[0]]:
            del _TABLES[stale]
        _TABLES[key] = _read(path)
    return _TABLES[key]


def clear_cache() -> None:
    _TABLES.clear()


def nb201_metrics(table: HWTable, index: int, dataset: str) -> dict[str, float]:
    """The metrics of NAS-Bench-201 architecture ``index`` on ``dataset`` (file units)."""
    if dataset not in table.nb201:
        raise KeyError(f"HW-NAS-Bench has no dataset {dataset!r} (has {sorted(table.nb201)})")
    out = {}
    for metric, values in table.nb201[dataset].items():
        if not 0 <= index < len(values):
            raise KeyError(f"index {index} is outside HW-NAS-Bench's {len(values)} {metric} values")
        out[metric] = float(values[index])
    return out


def fbnet_block_keys(op_indices: Sequence[int], dataset: str) -> list[str]:
    """The block-table keys of an FBNet architecture (22 indices into ``FBNET_OPS``): stem,
    one per layer (the first of a stage takes the stage's stride and the previous width),
    1x1 head conv, global pooling, classifier."""
    if dataset not in FBNET_MACRO:
        raise KeyError(f"FBNet dataset {dataset!r}: HW-NAS-Bench has {list(FBNET_MACRO)}")
    ops = [int(i) for i in op_indices]
    if len(ops) != FBNET_LAYERS or not all(0 <= i < len(FBNET_OPS) for i in ops):
        raise KeyError(
            f"an FBNet architecture is {FBNET_LAYERS} op indices in 0..{len(FBNET_OPS) - 1}, "
            f"got {ops}"
        )
    side, stem_stride, strides, head, classes = FBNET_MACRO[dataset]
    keys = [f"ConvNorm_H{side}_W{side}_Cin3_Cout{FBNET_STEM}_kernel3_stride{stem_stride}_group1"]
    side //= stem_stride
    c_in, layer = FBNET_STEM, 0
    for (c, n), first_stride in zip(FBNET_STAGES, strides):
        for i in range(n):
            s, op = (first_stride if i == 0 else 1), ops[layer]
            where = f"H{side}_W{side}_Cin{c_in}_Cout{c}"
            block = FBNET_BLOCKS[FBNET_OPS[op]]
            if block is None:
                keys.append(f"Skip_{where}_stride{s}")
            else:
                k, e, g = block
                keys.append(f"ConvBlock_{where}_exp{e}_kernel{k}_stride{s}_group{g}")
            side //= s
            c_in, layer = c, layer + 1
    keys.append(f"ConvNorm_H{side}_W{side}_Cin{c_in}_Cout{head}_kernel1_stride1_group1")
    keys.append(f"AvgP_H{side}_W{side}_Cin{head}_Cout{head}_kernel{side}_stride1")
    keys.append(f"FC_Cin{head}_Cout{classes}")
    return keys


def fbnet_metrics(table: HWTable, op_indices: Sequence[int], dataset: str) -> dict[str, float]:
    """The summed block costs of an FBNet architecture on ``dataset`` (``cifar100`` or
    ``ImageNet``), per metric the file's FBNet table has; ``KeyError`` for a block it lacks."""
    if table.fbnet is None:
        raise KeyError(f"{table.path.name} has no FBNet table")
    keys = fbnet_block_keys(op_indices, dataset)
    out = {}
    for metric in FBNET_METRICS:
        if metric in table.fbnet:
            blocks = table.fbnet[metric]
            missing = [k for k in keys if k not in blocks]
            if missing:
                raise KeyError(f"FBNet table {metric} has no block {missing[0]}")
            out[metric] = float(sum(float(blocks[k]) for k in keys))
    return out


class HWNASBench(Estimator):
    """HW-NAS-Bench's per-device latency and energy of a found NAS-Bench-201 cell, on each of
    ``datasets`` (fields ``<dataset>_<device>_latency_ms`` / ``_energy_mJ``).

    Args:
        file: the HW-NAS-Bench pickle (default: ``HW_NAS_BENCH_FILE``).
        datasets: which of the three NAS-Bench-201 datasets to report.
        nb201_file: the NAS-Bench-201 file giving the index where the HW-NAS-Bench file lists
            no arch strings (default: the space's ``benchmark_file`` / ``NASBENCH201_FILE``).
    """

    def __init__(
        self,
        file: str | None = None,
        datasets: Sequence[str] = NB201_DATASETS,
        nb201_file: str | None = None,
    ):
        self.file = file
        self.datasets = tuple(datasets)
        self.nb201_file = nb201_file

    def applies_to(self, space: SearchSpace) -> bool:
        return isinstance(space, NB201Space)

    def _index(self, table: HWTable, space: SearchSpace, arch: str) -> int | str:
        if table.nb201_index:
            found = table.nb201_index.get(arch)
            return found if found is not None else f"architecture {arch} not in HW-NAS-Bench"
        path = self.nb201_file or space.benchmark_file or env_path("NASBENCH201_FILE")
        if not path:
            return (
                "HW-NAS-Bench file lists no arch strings and no NAS-Bench-201 file gives the "
                "index (search_space.benchmark_file or NASBENCH201_FILE)"
            )
        try:
            found = nb201_file.index_of(path, arch)
        except (FileNotFoundError, UnsupportedFile, OSError) as err:
            return f"no NAS-Bench-201 index: {one_line(err)}"
        return found if found is not None else f"architecture {arch} not in NAS-Bench-201"

    def estimate(self, space: SearchSpace, genotype: GenotypeBase) -> dict[str, Any]:
        path = self.file or env_path(ENV_FILE)
        if not path:
            return {"available": False, "reason": f"no HW-NAS-Bench file ({ENV_FILE})"}
        try:
            table = load_hw_table(path)
        except (FileNotFoundError, UnsupportedFile, OSError) as err:
            return {"available": False, "reason": one_line(err)}
        index = self._index(table, space, space.benchmark_key(genotype))
        if isinstance(index, str):
            return {"available": False, "reason": index}
        out: dict[str, Any] = {
            "available": True,
            "index": index,
            "benchmark_file": table.path.name,
            "benchmark_sha256": table.sha256,
        }
        try:
            for dataset in self.datasets:
                for metric, value in nb201_metrics(table, index, dataset).items():
                    out[metric_field(dataset, metric)] = value
        except KeyError as err:
            return {"available": False, "reason": one_line(err.args[0] if err.args else err)}
        return out


register_estimator("hw_nas_bench", HWNASBench)
