"""DARTS-PT (``selection=pt``, ``nas/search/pt_selection.py``) in a run: its settings, the
identity its checkpoint is stamped with, and the ``resume`` the search stage runs under."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from nas.run.resume import run_identity
from nas.run.settings import selection_settings
from nas.search.pt_selection import PTCheckpointing, is_pt_checkpoint, pt_select


def pt_identity(cfg: DictConfig) -> dict[str, Any]:
    """What a DARTS-PT checkpoint must share with the run resuming it: the search's identity
    and every ``selection`` value."""
    return {
        **run_identity(cfg, "search"),
        "selection": OmegaConf.to_container(cfg.selection, resolve=True),
    }


def check_settings(cfg: DictConfig) -> None:
    """Reads the ``selection`` settings: a bad one (an unknown ``selection.score``, naming
    ``val_acc`` and the registered proxies) fails now, before the search trains."""
    selection_settings(cfg)


def search_stage_config(cfg: DictConfig) -> DictConfig:
    """The config the search stage resumes with: ``resume=<a DARTS-PT checkpoint>`` resumes
    the search as ``resume=auto`` (its own finished checkpoint; PT then continues from the
    file); any other value unchanged. Called before the search: checks the settings first."""
    check_settings(cfg)
    spec = cfg.resume
    if not spec or spec == "auto" or not is_pt_checkpoint(spec):
        return cfg
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.resume = "auto"
    return out


def select(cfg: DictConfig, module, data, run_dir: str | Path | None = None) -> dict[str, Any]:
    """``pt_select`` with the run's ``selection`` settings and seed; with ``run_dir``,
    checkpointed there and resumed under the run's ``resume``."""
    checkpointing = None
    if run_dir is not None:
        checkpointing = PTCheckpointing(Path(run_dir), pt_identity(cfg), cfg.resume)
    return pt_select(selection_settings(cfg), cfg.seed, module, data, checkpointing)
