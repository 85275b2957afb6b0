"""NAS-Bench-201 / NATS-Bench (topology) results read straight from the benchmark's files,
without the ``nas_201_api`` / ``nats_bench`` packages.

NAS-Bench-201 (Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural
Architecture Search", ICLR 2020) trained all 15,625 cells of its space on CIFAR-10,
CIFAR-100 and ImageNet16-120; NATS-Bench's topology search space ("tss"; Dong et al., TPAMI
2021) holds the same cells, re-released in another container. Reading the files directly makes
the lookup work where the API packages are not installed (they pin old torch/numpy) and lets
the result name the exact file it came from (``benchmark_sha256``).

The on-disk structure (read from the official ``nas_201_api/api_201.py``, ``api_utils.py`` and
``nats_bench/api_topology.py``; NATS-Bench's sample files confirm it):

- ``NAS-Bench-201-v1_0-e61699.pth`` / ``-v1_1-096897.pth``: a ``torch.save``d dict
  ``{"meta_archs": [arch string, ...] (the index is the position), "evaluated_indexes":
  [index, ...], "arch2infos": {index: {"less": ArchResults, "full": ArchResults}}}`` where
  ``"less"`` is the 12-epoch schedule (``hp="12"``) and ``"full"`` the 200-epoch one
  (``hp="200"``).
- ``NATS-tss-v1_0-3ffb9.pickle.pbz2``: the same dict, bz2-compressed pickle, with
  ``arch2infos[index] = {"12": ArchResults, "200": ArchResults}``.
- ``NATS-tss-v1_0-3ffb9-simple/`` (the API's ``fast_mode``): ``meta.pickle.pbz2`` (``meta_archs``
  as above, ``arch2infos`` None) and one ``{index:06d}.pickle.pbz2`` per architecture holding
  ``{"12": ArchResults, "200": ArchResults}``, read on demand.

An ``ArchResults`` is stored as its state dict: ``{"arch_index", "arch_str", "dataset_seed":
{dataset: [seed, ...]}, "all_results": {(dataset, seed): ResultsCount}, "clear_net_done"}``,
and a ``ResultsCount`` (one trial) as ``{"name", "seed", "epochs", "flop" (MFLOPs),
"params" (MB = millions), "latency" ([seconds, ...]), "eval_names", "eval_acc1es": {"<eval
set>@<epoch>": accuracy %}, "eval_losses", "eval_times", "train_acc1es", "train_losses",
"train_times", "arch_config", "net_state_dict", ...}``. Datasets: ``cifar10-valid`` (trained on
CIFAR-10's train half, eval sets ``x-valid`` and ``ori-test``), ``cifar10`` (train + valid,
``ori-test``), ``cifar100`` and ``ImageNet16-120`` (``x-valid``, ``x-test``, ``ori-test`` =
both halves).

What a lookup reports, at the schedule's last epoch and averaged over the benchmark's seeds
(the paper's tables average the trials; ``get_more_info(..., is_random=False)`` does the
same): the paper's validation and test accuracies, ``valid`` = ``cifar10-valid``'s ``x-valid``
for CIFAR-10 and ``x-valid`` for the others, ``test`` = ``cifar10``'s ``ori-test`` and
``x-test`` for the others; the FLOPs, parameters and latency the benchmark recorded, named
``nb201_flops_M`` etc.: the benchmark's FLOP count includes pooling and is not our ``macs``.
Only the final epoch's numbers are kept in memory (a few small tuples per architecture); the
raw file's object graph is freed once read (its peak is the pickle's size in objects: several
GB for the 2 GB v1_0 file, once per process).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from nas.estimate.benchmarks.files import (
    UnsupportedFile,
    file_key,
    file_sha256,
    is_bz2,
    load_pickle,
    load_torch_file,
    one_line,
)

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
# The two training schedules: NAS-Bench-201's names in its .pth, NATS-Bench's in its pickles.
HP_NAMES = {"less": "12", "full": "200", "12": "12", "200": "200"}
# Per reported dataset: (the trials' dataset, the eval set) of the paper's validation and test.
SPLITS: dict[str, dict[str, tuple[str, str]]] = {
    "cifar10": {"valid": ("cifar10-valid", "x-valid"), "test": ("cifar10", "ori-test")},
    "cifar100": {"valid": ("cifar100", "x-valid"), "test": ("cifar100", "x-test")},
    "ImageNet16-120": {
        "valid": ("ImageNet16-120", "x-valid"),
        "test": ("ImageNet16-120", "x-test"),
    },
}
META_FILE = "meta.pickle.pbz2"
TOP_KEYS = ("meta_archs", "arch2infos", "evaluated_indexes")


@dataclass(frozen=True)
class Trials:
    """One architecture's trials on one dataset under one schedule, at the last epoch.

    Attributes:
        seeds: the trials' seeds, in the file's order.
        acc: eval set -> per-seed accuracy (%) at epoch ``epochs - 1``; only sets every trial
            has.
        flops_M: per-seed MFLOPs as recorded (equal across seeds in the real files).
        params_M: per-seed parameters in millions ("MB" in the benchmark's words).
        latency_s: per-seed mean latency in seconds, None where not recorded.
        epochs: the schedule's length (12 or 200).
    """

    seeds: tuple[Any, ...]
    acc: Mapping[str, tuple[float, ...]]
    flops_M: tuple[float, ...]
    params_M: tuple[float, ...]
    latency_s: tuple[float | None, ...]
    epochs: int


Record = dict[str, dict[str, Trials]]  # hp ("12" / "200") -> dataset -> trials


def _latency(value: Any) -> float | None:
    """A trial's recorded latency: a list of seconds (mean of the positive ones) or None."""
    if value is None:
        return None
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    values = [v for v in values if v > 0]
    return fmean(values) if values else None


def _trial(result: Mapping[str, Any]) -> tuple[dict[str, float], float, float, float | None, int]:
    epochs = int(result["epochs"])
    accs = result["eval_acc1es"]
    final = {
        name: float(accs[f"{name}@{epochs - 1}"])
        for name in result["eval_names"]
        if f"{name}@{epochs - 1}" in accs
    }
    return (
        final,
        float(result["flop"]),
        float(result["params"]),
        _latency(result["latency"]),
        epochs,
    )


def arch_trials(state: Mapping[str, Any]) -> dict[str, Trials]:
    """An ``ArchResults`` state dict -> dataset -> ``Trials`` (the last epoch of each trial)."""
    out: dict[str, Trials] = {}
    for dataset, seeds in state["dataset_seed"].items():
        rows = [_trial(state["all_results"][(dataset, seed)]) for seed in seeds]
        if not rows:
            continue
        common = set(rows[0][0]).intersection(*(r[0] for r in rows[1:]))
        out[dataset] = Trials(
            seeds=tuple(seeds),
            acc={name: tuple(r[0][name] for r in rows) for name in sorted(common)},
            flops_M=tuple(r[1] for r in rows),
            params_M=tuple(r[2] for r in rows),
            latency_s=tuple(r[3] for r in rows),
            epochs=rows[0][4],
        )
    return out


def arch_record(hp_states: Mapping[str, Any], where: str) -> Record:
    """``{"less"/"full" or "12"/"200": ArchResults state}`` -> ``Record``; a malformed entry is
    ``UnsupportedFile`` naming ``where``."""
    try:
        return {
            HP_NAMES.get(str(hp), str(hp)): arch_trials(state) for hp, state in hp_states.items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise UnsupportedFile(
            f"{where}: not NAS-Bench-201's ArchResults layout ({type(err).__name__}: "
            f"{one_line(err, 80)})"
        ) from None


@dataclass
class NB201Table:
    """A benchmark file's architectures and (compact) results.

    Attributes:
        path: the file, or the NATS-Bench fast-mode directory.
        format: ``"nb201-pth"``, ``"nats-tss-pickle"`` or ``"nats-tss-dir"``.
        index: arch string -> index (``meta_archs``).
        records: index -> ``Record``; a directory's are read on first query.
        sha256: the file's hash (a directory: its ``meta.pickle.pbz2``'s).
    """

    path: Path
    format: str
    index: dict[str, int]
    records: dict[int, Record] = field(default_factory=dict)
    sha256: str = ""

    def record(self, index: int) -> Record | None:
        """The results of architecture ``index``; None where the benchmark has none."""
        if index not in self.records and self.format == "nats-tss-dir":
            for name in (f"{index:06d}.pickle.pbz2", f"{index}.pickle.pbz2"):
                file = self.path / name
                if file.is_file():
                    data = load_pickle(file)
                    if not isinstance(data, Mapping):
                        raise UnsupportedFile(f"{file.name} is not a dict of schedules")
                    self.records[index] = arch_record(data, file.name)
                    break
        return self.records.get(index)


def _check_meta(data: Any, name: str) -> dict[str, int]:
    if not isinstance(data, Mapping) or any(k not in data for k in TOP_KEYS):
        keys = sorted(data)[:6] if isinstance(data, Mapping) else type(data).__name__
        raise UnsupportedFile(
            f"{name} is not a NAS-Bench-201/NATS-Bench topology file (expected keys "
            f"{list(TOP_KEYS)}, found {keys})"
        )
    archs = list(data["meta_archs"])
    if archs and not (isinstance(archs[0], str) and archs[0].startswith("|")):
        raise UnsupportedFile(
            f"{name} lists architectures like {str(archs[0])[:40]!r}, not NAS-Bench-201 cells "
            "(a NATS-Bench size-space file?)"
        )
    return {arch: i for i, arch in enumerate(archs)}


def _read(path: Path) -> NB201Table:
    if path.is_dir():
        meta = path / META_FILE
        if not meta.is_file():
            raise UnsupportedFile(
                f"directory {path.name} has no {META_FILE} (NATS-Bench fast mode)"
            )
        index = _check_meta(load_pickle(meta), f"{path.name}/{META_FILE}")
        return NB201Table(path, "nats-tss-dir", index, sha256=file_sha256(meta))
    if is_bz2(path):
        data, fmt = load_pickle(path), "nats-tss-pickle"
    else:
        data, fmt = load_torch_file(path), "nb201-pth"
    index = _check_meta(data, path.name)
    sha = file_sha256(path)
    infos = data["arch2infos"]
    if not isinstance(infos, Mapping):
        raise UnsupportedFile(
            f"{path.name} holds no results (arch2infos is {type(infos).__name__}; a fast-mode "
            "meta file? Give its directory)"
        )
    records: dict[int, Record] = {}
    # Popped one by one: the raw trials (every epoch's numbers) are freed as they are read.
    for i in sorted(infos):
        records[int(i)] = arch_record(infos.pop(i), f"{path.name}: arch2infos[{i}]")
    del data, infos
    return NB201Table(path, fmt, index, records, sha)


_TABLES: dict[tuple[str, int, int], NB201Table] = {}


def load_table(path: str | Path) -> NB201Table:
    """The table of a benchmark file or fast-mode directory, read once per process (per path,
    size and mtime; a directory by its meta file). ``UnsupportedFile`` for another format,
    ``FileNotFoundError`` for a missing path."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"benchmark file {path} does not exist")
    key = file_key(path / META_FILE if path.is_dir() else path)
    if key not in _TABLES:
        for stale in [k for k in _TABLES if k[0] == key[0]]:  # the same file, changed since
            del _TABLES[stale]
        _TABLES[key] = _read(path)
    return _TABLES[key]


def clear_cache() -> None:
    _TABLES.clear()


def index_of(path: str | Path, arch: str) -> int | None:
    """The benchmark index of ``arch`` (NAS-Bench-201's string), None where it is not listed."""
    return load_table(path).index.get(arch)


def _mean(values: tuple[float | None, ...]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def query(path: str | Path, arch: str, hp: str = "200") -> dict[str, Any]:
    """The benchmark's results of ``arch`` under schedule ``hp`` (``"200"`` or ``"12"``):
    ``{"available": True, "index", "hp", "source": "file", "benchmark_file",
    "benchmark_sha256", "benchmark_format", "<dataset>_valid_acc", "<dataset>_test_acc",
    "<dataset>_valid_trials", "<dataset>_test_trials", "<dataset>_nb201_flops_M",
    "<dataset>_nb201_params_M", "<dataset>_nb201_latency_ms"}`` (accuracies in percent, mean
    over the trials' seeds; a field the file lacks is left out) or ``{"available": False,
    "reason": one line}``. ``UnsupportedFile`` propagates (the caller may try an API)."""
    try:
        table = load_table(path)
    except FileNotFoundError as err:
        return {"available": False, "reason": one_line(err)}
    i = table.index.get(arch)
    if i is None:
        return {"available": False, "reason": f"architecture {arch} not in the benchmark"}
    record = table.record(i)
    if record is None:
        return {"available": False, "reason": f"architecture {arch} (index {i}) has no results"}
    if hp not in record:
        return {
            "available": False,
            "reason": f"architecture {arch} (index {i}) has no hp={hp} results "
            f"(has {sorted(record)})",
        }
    trials = record[hp]
    out: dict[str, Any] = {
        "available": True,
        "index": i,
        "hp": hp,
        "source": "file",
        "benchmark_file": table.path.name,
        "benchmark_sha256": table.sha256,
        "benchmark_format": table.format,
    }
    for dataset, splits in SPLITS.items():
        for split, (trained_on, eval_set) in splits.items():
            t = trials.get(trained_on)
            if t is not None and eval_set in t.acc:
                out[f"{dataset}_{split}_acc"] = fmean(t.acc[eval_set])
                out[f"{dataset}_{split}_trials"] = len(t.acc[eval_set])
        costs = trials.get(dataset)
        if costs is not None:
            out[f"{dataset}_nb201_flops_M"] = fmean(costs.flops_M)
            out[f"{dataset}_nb201_params_M"] = fmean(costs.params_M)
            latency = _mean(costs.latency_s)
            if latency is not None:
                out[f"{dataset}_nb201_latency_ms"] = 1000.0 * latency
    return out
