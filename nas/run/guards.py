"""Guards that keep long runs from losing work or producing silent garbage.

- ``NonFiniteGuard``: a non-finite α or weight stops the run with a clear message before the
  next checkpoint could save the broken state (the last good checkpoint stays);
- the run's checkpoint (every epoch end, SIGTERM, atomic writes): ``nas/run/checkpointing.py``;
- ``nas.core.rng.RNGState``: the global RNGs (torch, numpy, python: drop path, sampling) travel
  in checkpoints, so a resumed run draws the same numbers as an uninterrupted one;
- ``check_output_dir``: an unwritable or full output directory is reported at start.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import lightning as L
import torch


class NonFiniteError(RuntimeError):
    """Raised when α or the weights become NaN or infinite."""


class NonFiniteGuard(L.Callback):
    """Checks α and the weights every ``every_n_steps`` steps and at every epoch end.

    The check reduces on the device and reads one boolean, so the hot path stays free of
    per-step host synchronisation. It runs before the epoch's checkpoint is written (a
    ``Checkpoint`` callback runs after the others), so a diverged state is never saved.
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
