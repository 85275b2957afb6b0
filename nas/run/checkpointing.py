"""The run's checkpoint, ``<run dir>/checkpoints/<stage>/last.ckpt``: when it is written and how.

A run survives a ``kill -9``, an OOM or a node failure with at most one epoch lost (or
``checkpoint.every_n_steps`` training batches / ``checkpoint.every_minutes`` minutes, for long
epochs), because ``RunCheckpoint`` writes ``last.ckpt``:

- at the end of every training epoch, after the module's own epoch-end hook (a ``Checkpoint``
  callback runs after it, as Lightning's ``ModelCheckpoint`` does) and after that epoch's
  validation: the point Lightning resumes from as "restarted on epoch end";
- every ``every_n_steps`` training batches and every ``every_minutes`` minutes inside an
  epoch (the datamodules' resumable samplers continue such a mid-epoch state exactly);
- in the batch where a run stops before its epoch's last batch: a SIGTERM (Lightning raises
  right after that batch) or ``trainer.max_steps``. In the second case Lightning would go on to the
  epoch's end (scheduler step, epoch counters marked complete) and a save there would make a
  resumed run skip the epoch's remaining batches; saved here, the mid-epoch state resumes where
  an uninterrupted run would be, and nothing is written over it afterwards.

Lightning's ``ModelCheckpoint(save_last=True, save_top_k=0)`` writes ``last.ckpt`` only when a
top-k checkpoint was saved in the same step (Lightning 2.6), i.e. only at the end of the fit:
hence this callback. ``nas.core.checkpoints.AtomicCheckpointIO`` writes every checkpoint (also
``trainer.save_checkpoint``) to a temporary file that is flushed and renamed into place, so a
crash during a write leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint

from nas.core.checkpoints import LAST


class RunCheckpoint(Checkpoint):
    """Writes the stage's ``last.ckpt`` (module docstring: when).

    Args:
        dirpath: ``<run dir>/checkpoints/<stage>``.
        every_n_steps: also every this many training batches inside an epoch (0: off).
        every_minutes: also when this many minutes passed since the last write (0: off).
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int = 0, every_minutes: float = 0.0):
        if every_n_steps < 0:
            raise ValueError(
                f"checkpoint.every_n_steps={every_n_steps}: must be 0 (off) or a positive "
                "number of training batches."
            )
        if every_minutes < 0:
            raise ValueError(
                f"checkpoint.every_minutes={every_minutes}: must be 0 (off) or a positive "
                "number of minutes."
            )
        self.path = Path(dirpath) / LAST
        self.every_n_steps = every_n_steps
        self.every_s = 60.0 * every_minutes
        self.last_model_path = ""  # where the last write went ("" before the first)
        self.saved_epoch: int | None = None  # the epoch a write's state is in
        self.saved_step: int | None = None  # and its global step
        self.stopped_mid_epoch = False  # a SIGTERM / max_steps stop saved; nothing after it
        self._batches = 0
        self._since = time.monotonic()

    def save(self, trainer: L.Trainer) -> None:
        # Every rank calls it; rank 0 writes. weights_only=False: the full state (optimizers,
        # loops, callbacks), said here so Lightning does not print that it chose it.
        trainer.save_checkpoint(self.path, weights_only=False)
        self.last_model_path = str(self.path)
        self.saved_epoch, self.saved_step = trainer.current_epoch, trainer.global_step
        self._batches, self._since = 0, time.monotonic()

    @staticmethod
    def stops_mid_epoch(trainer: L.Trainer, batch_idx: int) -> bool:
        """A SIGTERM or ``max_steps`` stop before the epoch's last batch. On the last batch
        nothing is saved: a resume from there would skip the epoch's end (validation, the
        epoch's report and scheduler step), so the previous epoch-end checkpoint stays the
        one to resume from (a SIGTERM) or the epoch end saves (``max_steps``)."""
        if batch_idx + 1 >= trainer.num_training_batches:
            return False
        if trainer.received_sigterm:
            return True
        max_steps = trainer.max_steps
        return max_steps is not None and max_steps > 0 and trainer.global_step >= max_steps

    def _periodic_due(self) -> bool:
        by_steps = self.every_n_steps and self._batches >= self.every_n_steps
        by_time = self.every_s and time.monotonic() - self._since >= self.every_s
        return bool(by_steps or by_time)

    def on_train_start(self, trainer, pl_module) -> None:
        self._batches, self._since = 0, time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.stopped_mid_epoch:
            return
        if self.stops_mid_epoch(trainer, batch_idx):
            self.save(trainer)
            self.stopped_mid_epoch = True
            return
        self._batches += 1
        last_batch = batch_idx + 1 >= trainer.num_training_batches
        if not last_batch and self._periodic_due():  # the epoch's end saves the last batch
            self.save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.stopped_mid_epoch:
            self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        # A fit that ends away from an epoch end without a SIGTERM (max_time); not a resumed
        # fit that was already finished (nothing new to write).
        resumed_finished = self.saved_step is None and self.path.is_file()
        if not (
            self.stopped_mid_epoch or resumed_finished or self.saved_step == trainer.global_step
        ):
            self.save(trainer)


def describe(path: Path) -> str | None:
    """Where a checkpoint file stands (``"end of epoch 3, step 84"``; epochs counted from 1,
    as the console does), or None when there is no readable one."""
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:
        return None
    progress = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("total", {})
    started, processed = progress.get("started", 0), progress.get("processed", 0)
    where = f"end of epoch {processed}" if processed == started else f"inside epoch {started}"
    return f"{where}, step {ckpt.get('global_step', 0)}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The most recently written ``last.ckpt`` under ``<run dir>/checkpoints/`` (any stage)."""
    found = [p for p in (Path(run_dir) / "checkpoints").rglob(LAST) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def preempted_message(run_dir: Path, since: float) -> str:
    """What a SIGTERM left on disk, read from the files (not assumed): the newest checkpoint and
    where it stands, or that there is none. ``since``: this process's start (``time.time()``),
    to say whether the checkpoint was written by this process or an earlier one."""
    resume = f"python train.py ... hydra.run.dir={run_dir} resume=auto"
    path = latest_checkpoint(run_dir)
    where = describe(path) if path is not None else None
    if where is None:
        return (
            "preempted (SIGTERM) before any checkpoint was written: nothing was saved, and "
            f"rerunning starts from the beginning ({resume})."
        )
    age = time.time() - path.stat().st_mtime
    by = "" if path.stat().st_mtime >= since else ", from before this process started"
    return (
        f"preempted (SIGTERM): the last checkpoint on disk is {path} ({where}, written "
        f"{age:.0f} s ago{by}); work after it is redone on resume. Continue with {resume}"
    )
