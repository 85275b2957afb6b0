"""``summary.json``: the results of a run, beside Hydra's resolved config."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from nas.core.io import atomic_write_json

SUMMARY_FILE = "summary.json"


def write_summary(
    run_dir: Path, cfg: DictConfig, fields: dict[str, Any], wall_time_s: float
) -> Path:
    summary = {
        "stage": cfg.stage.value,
        "space": cfg.search_space.name,
        "strategy": cfg.strategy.name,
        "data": cfg.data.name,
        "seed": cfg.seed,
        "genotype": None,
        "params": None,
        "macs": None,
        "test_acc": None,
        **fields,
        "wall_time_s": wall_time_s,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    path = run_dir / SUMMARY_FILE
    atomic_write_json(path, summary)
    return path
