"""The ``benchmark`` estimator: a found NAS-Bench-201 cell's results in the tabular benchmark
(Dong & Yang, ICLR 2020; NATS-Bench's topology space "tss" holds the same cells, Dong et al.,
TPAMI 2021).

The file comes from ``search_space.benchmark_file`` (or the estimator's ``file`` option) or the
``NASBENCH201_FILE`` environment variable: NAS-Bench-201's ``.pth``, NATS-Bench's
``NATS-tss-*.pickle.pbz2`` or its fast-mode directory ``NATS-tss-*-simple/``. It is read
directly (``benchmarks/nb201_file.py``: no API package needed); a format that reader does not
know goes to ``nas_201_api`` / ``nats_bench`` when one is installed. The result: per dataset
(CIFAR-10, CIFAR-100, ImageNet16-120) the validation and test accuracies of the 200-epoch
schedule, mean over the benchmark's seeds, and the benchmark's FLOPs / parameters / latency
(``<dataset>_nb201_flops_M``: the benchmark's count, pooling included, not our ``macs``), with
the file's name and SHA-256; otherwise a one-line reason.

Importing this module also registers the other benchmark estimators (``hw_nas_bench``,
``nb301``; ``nas/estimate/benchmarks/``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from nas.estimate.base import Estimator, register_estimator
from nas.estimate.benchmarks import hw_nas_bench, nb201_file, nb301  # noqa: F401 (registers)
from nas.estimate.benchmarks.files import UnsupportedFile, env_path, file_sha256, one_line
from supernet.genotypes import GenotypeBase
from supernet.spaces.base import SearchSpace

DATASETS = nb201_file.DATASETS
ENV_FILE = "NASBENCH201_FILE"
_APIS: dict[str, Any] = {}


def api_available() -> bool:
    """Whether ``nas_201_api`` or ``nats_bench`` is installed (only needed for a format the
    file reader does not know)."""
    return any(importlib.util.find_spec(m) is not None for m in ("nas_201_api", "nats_bench"))


def _load_api(path: str) -> Any:
    """The official API on ``path``, once per path: ``nats_bench`` for NATS-Bench's pickle or
    directory (fast mode), ``nas_201_api`` for a ``.pth`` (``nats_bench`` when only it is
    installed)."""
    if path not in _APIS:
        nats = Path(path).is_dir() or path.endswith(".pbz2")
        if not nats and importlib.util.find_spec("nas_201_api") is not None:
            from nas_201_api import NASBench201API

            _APIS[path] = NASBench201API(path, verbose=False)
        else:
            from nats_bench import create

            _APIS[path] = create(path, "tss", fast_mode=Path(path).is_dir(), verbose=False)
    return _APIS[path]


def _api_lookup(api: Any, arch_str: str, hp: str) -> dict[str, Any]:
    """The API's answers: test accuracies (``get_more_info``, mean over seeds), then the
    validation accuracies and costs (``get_cost_info``) where the API gives them."""
    index = api.query_index_by_arch(arch_str)
    if index is None or index < 0:
        return {"available": False, "reason": f"architecture {arch_str} not in the benchmark"}
    out: dict[str, Any] = {"available": True, "index": int(index), "hp": hp, "source": "api"}
    infos = {}
    for dataset in DATASETS:
        infos[dataset] = api.get_more_info(index, dataset, hp=hp, is_random=False)
        out[f"{dataset}_test_acc"] = float(infos[dataset]["test-accuracy"])
    # An older API (or a stand-in) may lack these queries: the test accuracies stand alone.
    try:
        infos["cifar10"] = api.get_more_info(index, "cifar10-valid", hp=hp, is_random=False)
        for dataset in DATASETS:
            out[f"{dataset}_valid_acc"] = float(infos[dataset]["valid-accuracy"])
            cost = api.get_cost_info(index, dataset, hp=hp)
            out[f"{dataset}_nb201_flops_M"] = float(cost["flops"])
            out[f"{dataset}_nb201_params_M"] = float(cost["params"])
            if cost.get("latency") is not None:
                out[f"{dataset}_nb201_latency_ms"] = 1000.0 * float(cost["latency"])
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        out["extras_reason"] = f"the API gave no validation accuracy / costs: {one_line(err)}"
    return out


def _describe(path: str) -> dict[str, Any]:
    """The file's name and hash beside an API's answer."""
    p = Path(path)
    target = p / nb201_file.META_FILE if p.is_dir() else p
    fields: dict[str, Any] = {"benchmark_file": p.name}
    if target.is_file():
        fields["benchmark_sha256"] = file_sha256(target)
    return fields


def lookup(
    arch_str: str, benchmark_file: str | None = None, api: Any = None, hp: str = "200"
) -> dict[str, Any]:
    """The benchmark's results of NAS-Bench-201 cell ``arch_str`` (``nb201_file.query``'s
    fields: ``{"available": True, "index", "cifar10_test_acc", "cifar10_valid_acc", ...}``,
    accuracies in percent) or ``{"available": False, "reason": "..."}``; a file never makes
    it raise.

    ``api``: an already built API object (``query_index_by_arch``, ``get_more_info``) to ask
    instead of a file. The file: ``benchmark_file``, else ``NASBENCH201_FILE``."""
    if api is not None:
        return _api_lookup(api, arch_str, hp)
    path = benchmark_file or env_path(ENV_FILE)
    if not path:
        return {
            "available": False,
            "reason": f"no benchmark file (search_space.benchmark_file or {ENV_FILE})",
        }
    if not Path(path).exists():
        return {"available": False, "reason": f"benchmark file {path} does not exist"}
    try:
        return nb201_file.query(path, arch_str, hp)
    except UnsupportedFile as err:
        unsupported = one_line(err)
    except (OSError, MemoryError) as err:
        return {"available": False, "reason": f"cannot read {path}: {one_line(err)}"}
    if not api_available():
        return {"available": False, "reason": f"unsupported benchmark file: {unsupported}"}
    try:
        return {**_api_lookup(_load_api(path), arch_str, hp), **_describe(path)}
    except Exception as err:  # a third-party API on a file our reader refused: any failure
        return {
            "available": False,
            "reason": f"unsupported benchmark file ({unsupported}); the API failed too: "
            f"{one_line(err, 120)}",
        }


class BenchmarkLookup(Estimator):
    """The space's tabular benchmark (``SearchSpace.benchmark_key``: NAS-Bench-201 for nb201),
    read from ``file`` or the space's ``benchmark_file`` (``search_space.benchmark_file``) or
    ``NASBENCH201_FILE``; ``hp``: the training schedule (``"200"`` epochs, or ``"12"``)."""

    def __init__(self, file: str | None = None, hp: str = "200"):
        self.file, self.hp = file, str(hp)

    def applies_to(self, space: SearchSpace) -> bool:
        return type(space).benchmark_key is not SearchSpace.benchmark_key

    def estimate(self, space: SearchSpace, genotype: GenotypeBase) -> dict[str, Any]:
        key = space.benchmark_key(genotype)
        if key is None:
            return {"available": False, "reason": f"search_space={space.name} has no benchmark"}
        return lookup(key, self.file or space.benchmark_file, hp=self.hp)


register_estimator("benchmark", BenchmarkLookup)
