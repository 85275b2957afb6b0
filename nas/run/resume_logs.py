"""A resumed run's logs continue the interrupted run's: no lost rows, no duplicated epochs.

A run resumes from the last checkpoint, so the epochs (and, inside an epoch, the batches) after
it are run again. Whatever the interrupted process logged after that point is dropped when the
resumed fit starts, and everything before it is kept:

- ``search_history.jsonl``: lines of epochs the checkpoint does not cover (``trim_history``);
- ``csv/<stage>/metrics.csv``: Lightning's CSV writer deletes an existing file when it starts;
  ``ResumableCSVLogger`` reads it first and, on resume, writes back the rows before the
  checkpoint (``ContinueLogs``);
- W&B: the resumed stage logs to the same W&B run id (``nas/run/wandb_run.py``).

"Before the checkpoint": an epoch-end checkpoint of epoch ``e`` (0-based) covers every row of
epochs ``<= e``; a mid-epoch one of epoch ``e`` covers the rows of epochs ``< e`` and of
epoch ``e`` logged at a step below the checkpoint's logger step.
"""

from __future__ import annotations

import csv
import os

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from nas.core.resume_point import resume_point


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer, which starts a new file as Lightning's does (without its warning
    that the old one will be deleted) but remembers the old rows for a resume."""

    def _check_log_dir_exists(self) -> None:
        self.previous_rows: list[dict[str, str]] = []
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.previous_rows = list(csv.DictReader(f))
            os.remove(self.metrics_file_path)

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        # On disk at once, not at Lightning's next flush: a kill -9 then loses no logged row.
        super().log_metrics(metrics_dict, step)
        self.save()

    def restore(self, epochs_done: int, step: int) -> int:
        """Writes back the remembered rows the checkpoint covers; returns how many."""

        def covered(row: dict[str, str]) -> bool:
            epoch = int(float(row["epoch"])) if row.get("epoch") else None
            row_step = int(float(row["step"])) if row.get("step") else None
            if epoch is None:
                return row_step is not None and row_step < step
            return epoch < epochs_done or (epoch == epochs_done and (row_step or 0) < step)

        rows = [r for r in self.previous_rows if covered(r)]
        self.previous_rows = []
        if not rows:
            return 0
        keys = sorted({k for r in rows for k, v in r.items() if v != ""} | set(self.metrics_keys))
        with open(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = keys
        return len(rows)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose file survives a resume (``ContinueLogs``); otherwise the same."""

    def for_version(self, version: str) -> ResumableCSVLogger:
        """The same logger writing ``csv/<version>/metrics.csv`` (a P-DARTS stage's own file:
        each stage's fit counts epochs and steps from 0 and resumes on its own)."""
        return ResumableCSVLogger(save_dir=self.save_dir, name=self.name, version=version)

    @property
    def experiment(self) -> _KeepingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


class ContinueLogs(L.Callback):
    """On a resumed fit, drops the CSV rows the interrupted process logged after its
    checkpoint (the search's history file: ``SearchReport`` trims its own)."""

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        if not trainer.ckpt_path or not trainer.is_global_zero:
            return
        epochs_done, step = resume_point(trainer)
        for logger in trainer.loggers:
            if isinstance(logger, ResumableCSVLogger):
                logger.experiment.restore(epochs_done, step)
