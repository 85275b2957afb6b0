"""Guards that keep long runs from losing work or producing silent garbage.

- ``NonFiniteGuard``: a non-finite α or weight stops the run with a clear message before the
  next checkpoint could save the broken state (the last good checkpoint stays);
- ``PreemptionCheckpoint``: on SIGTERM (cluster preemption; Lightning's signal connector sets
  ``trainer.received_sigterm``) or when ``trainer.max_steps`` stops a run inside an epoch, the
  current state is saved as ``last.ckpt`` before Lightning stops, and ``LastCheckpoint`` (the
  run's ModelCheckpoint) does not overwrite it with the state after the cut-short epoch's end;
- ``RNGState``: the global RNGs (torch, numpy, python: drop path, sampling) travel in checkpoints,
  so a resumed run draws the same numbers as an uninterrupted one;
- ``check_output_dir``: an unwritable or full output directory is reported at start.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class NonFiniteError(RuntimeError):
    """Raised when α or the weights become NaN or infinite."""


class NonFiniteGuard(L.Callback):
    """Checks α and the weights every ``every_n_steps`` steps and at every epoch end.

    The check reduces on the device and reads one boolean, so the hot path stays free of
    per-step host synchronisation. Listed before ModelCheckpoint, it runs before the epoch's
    checkpoint is written.
    """

    def __init__(self, every_n_steps: int = 50):
        self.every_n_steps = max(1, every_n_steps)

    @staticmethod
    def _finite(module: L.LightningModule) -> bool:
        flags = [torch.isfinite(p).all() for p in module.parameters()]
        return bool(torch.stack(flags).all())

    def _check(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._finite(module):
            return
        ckpt = _last_checkpoint(trainer)
        bad = [n for n, p in module.named_parameters() if not torch.isfinite(p).all()][:5]
        raise NonFiniteError(
            f"Non-finite values in {', '.join(bad)} at epoch {trainer.current_epoch}, step "
            f"{trainer.global_step}: the run diverged and was stopped. The last good checkpoint "
            f"is {ckpt or '(none yet)'}. Lower the learning rate (strategy.weight_optimizer.lr / "
            "strategy.arch_optimizer.lr) or the gradient clipping norm and resume or restart."
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % self.every_n_steps == 0:
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)


class PreemptionCheckpoint(L.Callback):
    """Saves ``last.ckpt`` inside the batch where a run stops before its epoch ends.

    Two stops: a SIGTERM (Lightning raises right after this batch) and ``trainer.max_steps``
    reached before the epoch's last batch. In the second case Lightning would go on to run the
    epoch's end (scheduler step, epoch counters marked complete) and ModelCheckpoint would save
    that state, so a resumed run would skip the epoch's remaining batches. Saved here, the
    checkpoint is the mid-epoch state the SIGTERM path saves, and a resumed run continues
    exactly where an uninterrupted one would be.
    """

    def __init__(self, dirpath: Path):
        self.path = Path(dirpath) / "last.ckpt"
        self.saved: Path | None = None

    @staticmethod
    def stops_mid_epoch(trainer: L.Trainer, batch_idx: int) -> bool:
        if getattr(trainer, "received_sigterm", False):
            return True
        max_steps = trainer.max_steps
        batches = trainer.num_training_batches
        return (
            max_steps is not None
            and max_steps > 0
            and trainer.global_step >= max_steps
            and batch_idx + 1 < batches
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.saved is None and self.stops_mid_epoch(trainer, batch_idx):
            trainer.save_checkpoint(self.path)
            self.saved = self.path


class LastCheckpoint(ModelCheckpoint):
    """The run's ``last.ckpt`` ModelCheckpoint, which leaves a mid-epoch stop's checkpoint
    (``PreemptionCheckpoint``) as it is instead of saving the cut-short epoch's end over it."""

    def __init__(self, stop: PreemptionCheckpoint, **kwargs: Any):
        super().__init__(**kwargs)
        self.stop = stop

    def on_train_batch_end(self, trainer, pl_module, *args: Any, **kwargs: Any) -> None:
        if self.stop.saved is None:
            super().on_train_batch_end(trainer, pl_module, *args, **kwargs)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.stop.saved is None:
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.stop.saved is None:
            super().on_validation_end(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.stop.saved is None:
            super().on_train_end(trainer, pl_module)


class RNGState(L.Callback):
    """Puts the global RNG states into checkpoints and restores them on resume."""

    # Tensors, lists and ints only, so checkpoints load with torch.load(weights_only=True).
    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": [version, list(internal), gauss_next],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))


def _last_checkpoint(trainer: L.Trainer) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        path = getattr(cb, "last_model_path", "") or getattr(cb, "best_model_path", "")
        if path:
            return path
    return None


def check_output_dir(run_dir: Path, min_free_mb: int = 100) -> None:
    """Fails fast when results could not be written: not writable, or under ``min_free_mb`` free."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(
            f"The output directory {str(run_dir)!r} is not writable ({err}). Choose another "
            "with hydra.run.dir=<dir> (or hydra.sweep.dir for multiruns)."
        ) from None
    free_mb = shutil.disk_usage(run_dir).free // 2**20
    if free_mb < min_free_mb:
        raise ValueError(
            f"The output directory {str(run_dir)!r} has only {free_mb} MiB free; a run needs at "
            f"least {min_free_mb} MiB for checkpoints and logs. Free space or move the run with "
            "hydra.run.dir=<dir>."
        )
