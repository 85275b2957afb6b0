"""Latency lookup tables: measured by ``python train.py stage=latency``, read by the cost model.

Every distinct candidate op at every shape it runs at in the child network (``nas/hardware/costs.py``:
``OpShape.key``, e.g. ``k5_e6|24>40|s2|32x32``) and the network's fixed part (the child with
its searched ops stubbed out, key ``fixed|<space>|<input>|<digest>``) are built on the current
device and timed in eval mode: ``warmup`` untimed forwards, then the median of ``repeats``
synchronised forwards of a batch of ``batch`` (``measure_latency``, which the export's timings use too). The
file records the device, torch version, batch, threads and the spaces it covers, so a table is
only ever read for what it measured (FBNet, Wu et al., CVPR 2019, sec. 3.2: a per-operator
latency lookup table of the target device; ProxylessNAS, Cai et al., ICLR 2019, sec. 3.3).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nas.hardware.costs import CostModel, LatencyTableError

LATENCY_FILE = "latency_table.json"
TABLE_FORMAT = "oneshot-nas latency table"
TABLE_VERSION = 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    fn: Callable[[Any], Any],
    x: Any,
    device: torch.device | str = "cpu",
    repeats: int = 20,
    warmup: int = 5,
    batch: int | None = None,
) -> dict[str, Any]:
    """Median wall time of ``fn(x)`` in milliseconds over ``repeats`` calls after ``warmup``.

    Each call is synchronised with the device (CUDA), so the time is the forward's, not its
    launch's. Returns ``latency_ms`` with what it was measured under.
    """
    device = torch.device(device)
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        _sync(device)
        times = []
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            fn(x)
            _sync(device)
            times.append((time.perf_counter() - start) * 1e3)
    return {
        "latency_ms": statistics.median(times),
        "latency_min_ms": min(times),
        "batch": batch if batch is not None else int(x.shape[0]),
        "repeats": len(times),
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def measure(
    models: list[CostModel],
    device: torch.device | str = "cpu",
    batch: int = 1,
    repeats: int = 20,
    warmup: int = 5,
) -> dict[str, float]:
    """Median latency (ms) of every op shape and fixed part of ``models`` on ``device``."""
    device = torch.device(device)
    entries: dict[str, float] = {}
    for cm in models:
        jobs = [(s.key, s.build(), s.sample_shape, s.input_dtype) for s in cm.op_shapes()]
        fixed_dtype = torch.long if len(cm.input_shape) == 1 else torch.float32  # token ids
        jobs.append((cm.fixed_key, cm.stub, cm.input_shape, fixed_dtype))
        for key, module, shape, dtype in jobs:
            if key in entries:
                continue
            net = module.to(device).eval()
            if dtype.is_floating_point:
                x = torch.randn(batch, *shape, device=device, dtype=dtype)
            else:  # token ids: zeros are a valid id in every vocabulary
                x = torch.zeros(batch, *shape, device=device, dtype=dtype)
            entries[key] = measure_latency(net, x, device, repeats, warmup)["latency_ms"]
    return entries


def save_table(
    path: str | Path,
    entries: dict[str, float],
    spaces: list[str],
    device: torch.device | str,
    batch: int,
    repeats: int,
    warmup: int,
) -> Path:
    device = torch.device(device)
    data = {
        "format": TABLE_FORMAT,
        "version": TABLE_VERSION,
        "spaces": sorted(set(spaces)),
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "warmup": warmup,
        "unit": "ms",
        "table": dict(sorted(entries.items())),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path


def load_table(path: str | Path, space: str) -> dict[str, Any]:
    """The table file's contents, checked: readable, the right format, measured for ``space``."""
    path = Path(path)
    if not path.is_file():
        raise LatencyTableError(
            f"costs.latency_table={str(path)!r} does not exist; measure one with "
            "`python train.py stage=latency` (it writes latency_table.json in the run directory)."
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LatencyTableError(f"latency table {path} is not valid JSON: {err}") from None
    table = data.get("table") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("format") != TABLE_FORMAT
        or not isinstance(table, dict)
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for v in table.values()
        )
    ):
        raise LatencyTableError(
            f"latency table {path} is malformed: expected a JSON object with "
            f"format={TABLE_FORMAT!r} and a 'table' of key -> non-negative milliseconds "
            "(as `python train.py stage=latency` writes)."
        )
    if space not in data.get("spaces", []):
        raise LatencyTableError(
            f"latency table {path} was measured for search space(s) {data.get('spaces')}, not "
            f"{space!r}: measure one with `python train.py stage=latency search_space={space}`."
        )
    return data


def attach(cm: CostModel, path: str | Path) -> CostModel:
    """Loads the table at ``path`` into ``cm``; every entry ``cm`` needs must be there."""
    data = load_table(path, cm.space)
    table = {k: float(v) for k, v in data["table"].items()}
    needed = [s.key for s in cm.op_shapes()] + [cm.fixed_key]
    missing = [k for k in needed if k not in table]
    if missing:
        shown = ", ".join(repr(k) for k in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise LatencyTableError(
            f"latency table {path} lacks {len(missing)} of the {len(needed)} entries of this "
            f"{cm.space} network, e.g. {shown}: it was measured for other sizes. Re-run "
            "`python train.py stage=latency` with this run's search_space / retrain / data."
        )
    cm.set_latency(table)
    return cm
