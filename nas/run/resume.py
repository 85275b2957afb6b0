"""Resuming from checkpoints: which checkpoint, and whether it belongs to this config.

``resume=auto`` takes ``<run dir>/checkpoints/<stage>/last.ckpt`` when it exists (else starts
fresh); ``resume=<path>`` takes that file. Every checkpoint carries the parts of the config that
define the run (``ConfigStamp``); resuming under a different one is refused, listing the
differences, since it would silently mix two experiments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nas.core.checkpoints import STAMP_KEY, differences

# What defines a run's results; trainer/logger options (epochs to extend, devices) may change.
IDENTITY_KEYS = ("seed", "search_space", "strategy", "data")
RETRAIN_KEYS = ("retrain",)


def run_identity(cfg: DictConfig, stage: str) -> dict[str, Any]:
    keys = IDENTITY_KEYS + (RETRAIN_KEYS if stage == "retrain" else ())
    return {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in keys
    }


class ConfigStamp(L.Callback):
    """Writes the run's identity into every checkpoint."""

    def __init__(self, identity: dict[str, Any]):
        self.identity = identity

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[STAMP_KEY] = self.identity


def resolve_checkpoint(spec: str | None, run_dir: Path, stage: str) -> Path | None:
    """The checkpoint to resume from, or None to start fresh."""
    if not spec:
        return None
    if spec == "auto":
        last = Path(run_dir) / "checkpoints" / stage / "last.ckpt"
        return last if last.is_file() else None
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"resume={spec!r}: no such checkpoint file. Use resume=auto (the run directory's "
            "last checkpoint) or the path of a .ckpt file."
        )
    return path


def check_checkpoint(path: Path, cfg: DictConfig, stage: str) -> None:
    """Refuses a checkpoint that is unreadable or was written under a different config."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(
            f"Checkpoint {str(path)!r} cannot be read ({type(err).__name__}: {err})."
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{str(path)!r} is not a Lightning checkpoint (no 'state_dict').")
    saved = ckpt.get(STAMP_KEY)
    if saved is None:
        raise ValueError(
            f"Checkpoint {str(path)!r} was not written by oneshot-nas (no config stamp)."
        )
    diff = differences(saved, run_identity(cfg, stage))
    if diff:
        raise ValueError(
            f"Checkpoint {str(path)!r} belongs to a different run; refusing to resume. "
            f"Differences: {'; '.join(diff[:10])}"
            + (f" (and {len(diff) - 10} more)." if len(diff) > 10 else ".")
        )
