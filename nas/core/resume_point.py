"""Where a resumed fit starts, and the per-epoch history trimmed to it.

A run resumes from its last checkpoint, so the epochs (and batches) after it run again: the
lines an interrupted run wrote for them are dropped (``nas/run/resume_logs.py`` does the same for
the CSV logger). Shared by the search's report (``search_history.jsonl``) and the run's loggers.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L

from nas.core.io import atomic_file


def resume_point(trainer: L.Trainer) -> tuple[int, int]:
    """(epochs fully covered by the restored checkpoint, the first logger step it does not
    cover). A mid-epoch checkpoint is written in its batch's end hook, before Lightning counts
    that batch (it does so on restart, after ``on_train_start``), so that batch's own rows,
    logged at the uncounted step, are covered too."""
    fit = trainer.fit_loop
    progress, step = fit.epoch_progress.total, fit.epoch_loop._batches_that_stepped
    mid_epoch = progress.processed < progress.started
    return progress.processed, step + 1 if mid_epoch else step


def trim_history(path: Path, epochs_done: int) -> int:
    """Keeps the ``search_history.jsonl`` lines of epochs ``< epochs_done``; returns how many
    lines were dropped."""
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] < epochs_done]
    if len(kept) != len(lines):
        with atomic_file(path) as f:
            f.write("".join(line + "\n" for line in kept))
    return len(lines) - len(kept)
