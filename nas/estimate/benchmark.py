"""Optional NAS-Bench-201 lookup of a found architecture (Dong & Yang, ICLR 2020; NATS-Bench's
topology search space "tss" holds the same architectures, Dong et al., TPAMI 2021).

When ``nas_201_api`` or ``nats_bench`` is importable and a benchmark file is present (path from
``search_space.benchmark_file`` or the ``NASBENCH201_FILE`` environment variable), the
200-epoch test accuracies (mean over the benchmark's seeds) on CIFAR-10, CIFAR-100 and
ImageNet16-120 are returned; otherwise a one-line reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nas.estimate.base import Estimator, register_estimator
from supernet.genotypes import GenotypeBase
from supernet.spaces.base import SearchSpace

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")


def _load_api(path: str):
    try:
        from nas_201_api import NASBench201API

        return NASBench201API(path, verbose=False)
    except ImportError:
        pass
    from nats_bench import create

    return create(path, "tss", fast_mode=True, verbose=False)


def api_available() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(m) is not None for m in ("nas_201_api", "nats_bench"))


def lookup(arch_str: str, benchmark_file: str | None = None, api: Any = None) -> dict[str, Any]:
    """``{"available": True, "index": i, "cifar10_test_acc": ..., ...}`` (accuracies in
    percent, as the benchmark stores them) or ``{"available": False, "reason": "..."}``."""
    path = benchmark_file or os.environ.get("NASBENCH201_FILE")
    if api is None:
        if not api_available():
            return {"available": False, "reason": "nas_201_api / nats_bench not installed"}
        if not path or not Path(path).exists():
            return {
                "available": False,
                "reason": "no benchmark file (search_space.benchmark_file or NASBENCH201_FILE)",
            }
        api = _load_api(path)
    index = api.query_index_by_arch(arch_str)
    if index is None or index < 0:
        return {"available": False, "reason": f"architecture {arch_str} not in the benchmark"}
    out: dict[str, Any] = {"available": True, "index": int(index), "hp": "200"}
    for dataset in DATASETS:
        info = api.get_more_info(index, dataset, hp="200", is_random=False)
        out[f"{dataset}_test_acc"] = float(info["test-accuracy"])
    return out


class BenchmarkLookup(Estimator):
    """The space's tabular benchmark (``SearchSpace.benchmark_key``: NAS-Bench-201 for nb201),
    read from the space's ``benchmark_file`` (``search_space.benchmark_file``) or
    ``NASBENCH201_FILE``."""

    def applies_to(self, space: SearchSpace) -> bool:
        return type(space).benchmark_key is not SearchSpace.benchmark_key

    def estimate(self, space: SearchSpace, genotype: GenotypeBase) -> dict[str, Any]:
        key = space.benchmark_key(genotype)
        if key is None:
            return {"available": False, "reason": f"search_space={space.name} has no benchmark"}
        return lookup(key, space.benchmark_file)


register_estimator("benchmark", BenchmarkLookup)
