"""Runs that survive a crash: a checkpoint at every epoch's end, atomic writes, SIGTERM
messages read from the files, and resumes that continue the interrupted run exactly (α,
weights, history, CSV rows, W&B run id). The ``kill -9`` cases are real subprocess runs."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nas.core.checkpoints import AtomicCheckpointIO
from nas.core.io import atomic_write_json
from nas.run.checkpointing import RunCheckpoint, describe, preempted_message
from nas.search.report import SearchReport
from tests.helpers.paths import ROOT
from tests.helpers.runs import assert_same_run, run_train

SEARCH = [
    "stage=search", "seed=4", "trainer.max_epochs=3",
    "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
]  # fmt: skip
LAST = Path("checkpoints/search/last.ckpt")


class Crash(Exception):
    """Stands in for a process dying (no handler of ours runs after it)."""


def history_epochs(run_dir: Path) -> list[int]:
    lines = (run_dir / "search_history.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def csv_epochs(run_dir: Path, column: str) -> list[int]:
    with open(run_dir / "csv" / "search" / "metrics.csv", newline="") as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f) if r.get(column)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    run_dir = tmp_path_factory.mktemp("full")
    try:
        assert run_train(mp, run_dir, *SEARCH) == 0
    finally:
        mp.undo()
    return run_dir


def test_crash_resumes_exactly_from_the_last_checkpoint(uninterrupted, tmp_path, monkeypatch):
    """Every epoch's checkpoint is on disk before the next epoch starts, and with
    checkpoint.every_n_steps=2 also one inside each epoch; a crash inside epoch 3, after its
    periodic checkpoint and its first two batches' rows: resume=auto continues from there
    without lost or duplicated epochs or CSV rows."""
    seen = []

    def at_epoch_start(self, trainer, pl_module):
        seen.append(describe(tmp_path / LAST))

    def crash_mid(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 2 and batch_idx == 2:  # batch 2's rows are logged
            raise Crash

    with monkeypatch.context() as m:
        m.setattr(SearchReport, "on_train_epoch_start", at_epoch_start, raising=False)
        m.setattr(SearchReport, "on_train_batch_start", crash_mid, raising=False)
        assert run_train(m, tmp_path, *SEARCH, "checkpoint.every_n_steps=2") == 1  # a crash
    assert seen == [None, "end of epoch 1, step 6", "end of epoch 2, step 12"]
    assert describe(tmp_path / LAST) == "inside epoch 3, step 16"
    assert not list((tmp_path / LAST).parent.glob(".*.tmp"))
    assert history_epochs(tmp_path) == [0, 1]
    assert run_train(monkeypatch, tmp_path, *SEARCH, "resume=auto") == 0
    assert_same_run(uninterrupted, tmp_path)
    assert history_epochs(tmp_path) == history_epochs(uninterrupted) == [0, 1, 2]
    for column in ("search/val_acc", "alpha_entropy", "alpha/normal/0->2/skip_connect"):
        assert csv_epochs(tmp_path, column) == csv_epochs(uninterrupted, column) == [0, 1, 2]
    steps = "search/train_loss_step"
    assert csv_epochs(tmp_path, steps) == csv_epochs(uninterrupted, steps)


def sigterm_in(monkeypatch, cls, hook: str, when) -> None:
    """Sends this process a real SIGTERM from ``cls.<hook>`` when ``when(trainer)``."""
    original = getattr(cls, hook, None)

    def hooked(self, trainer, *args):
        if when(trainer) and not trainer.received_sigterm:
            os.kill(os.getpid(), signal.SIGTERM)
        if original is not None:
            original(self, trainer, *args)

    monkeypatch.setattr(cls, hook, hooked, raising=False)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("epoch_end", marks=pytest.mark.slow),
        "validation",
        pytest.param("last_validation_batch", marks=pytest.mark.slow),
    ],
)
def test_sigterm_outside_a_batch_says_what_is_on_disk(
    uninterrupted, tmp_path, monkeypatch, capsys, where
):
    """While the epoch's figures render, or on the epoch's last validation batch: the epoch
    ends, its checkpoint is written, then Lightning stops. In the middle of validation:
    Lightning stops there, and the previous epoch's checkpoint is the one to resume from. The
    message names the file and where it stands; the file says the same; the resume is exact."""
    in_epoch_2 = lambda t: t.current_epoch == 1  # noqa: E731
    with monkeypatch.context() as m:
        if where == "epoch_end":
            sigterm_in(m, SearchReport, "on_train_epoch_end", in_epoch_2)
        else:
            batch = 0 if where == "validation" else 1
            hook = "on_validation_batch_start"
            original = getattr(SearchReport, hook, None)
            assert original is None or callable(original)

            def at_batch(self, trainer, pl_module, b, batch_idx, *args):
                if in_epoch_2(trainer) and batch_idx == batch and not trainer.received_sigterm:
                    os.kill(os.getpid(), signal.SIGTERM)

            m.setattr(SearchReport, hook, at_batch, raising=False)
        assert run_train(m, tmp_path, *SEARCH) == 3
    expected = "end of epoch 1, step 6" if where == "validation" else "end of epoch 2, step 12"
    err = capsys.readouterr().err
    assert describe(tmp_path / LAST) == expected
    assert f"{tmp_path / LAST} ({expected}" in err
    assert not (tmp_path / "alphas.json").exists()
    assert run_train(monkeypatch, tmp_path, *SEARCH, "resume=auto") == 0
    assert f"resuming from {tmp_path / LAST} ({expected})" in capsys.readouterr().out
    assert_same_run(uninterrupted, tmp_path)
    assert history_epochs(tmp_path) == [0, 1, 2]


def test_preempted_before_any_checkpoint_says_nothing_was_saved(tmp_path):
    message = preempted_message(tmp_path, time.time())
    assert "before any checkpoint was written: nothing was saved" in message


def test_a_crash_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise Crash

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(Crash):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_result_files_respect_the_umask(tmp_path, umask):
    from nas.search.figures import save_png

    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "summary.json", {"a": 1})
        AtomicCheckpointIO().save_checkpoint({"x": 1}, tmp_path / "last.ckpt")
        import matplotlib.figure

        save_png(matplotlib.figure.Figure(), tmp_path / "fig.png")
    finally:
        os.umask(old)
    for name in ("summary.json", "last.ckpt", "fig.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_resumed_stage_continues_its_wandb_run(tmp_path, monkeypatch):
    original = RunCheckpoint.on_train_epoch_end

    def crash_after(self, trainer, pl_module):
        original(self, trainer, pl_module)
        raise Crash

    args = (*SEARCH, "trainer.max_epochs=2")
    with monkeypatch.context() as m:
        m.setattr(RunCheckpoint, "on_train_epoch_end", crash_after)
        assert run_train(m, tmp_path, *args, logger="wandb") == 1  # a crash
    assert run_train(monkeypatch, tmp_path, *args, "resume=auto", logger="wandb") == 0
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    ids = {p.name.rsplit("-", 1)[-1] for p in runs}
    recorded = json.loads((tmp_path / "wandb" / "runs.json").read_text())["search"]["id"]
    assert ids == {recorded}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["wandb"]["search"]["run_id"] == recorded


# The honest test: SIGKILL, no handler of ours or Lightning's runs. The same config and thread
# count as the in-process ``uninterrupted`` run, which it must equal bitwise.
KILL_RUN = ["experiment=smoke", "logger=csv", "threads=1", *SEARCH]


def train_process(run_dir: Path, *extra: str, base: list[str] = KILL_RUN) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "train.py", f"hydra.run.dir={run_dir}", *base, *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def kill_after_epoch(proc: subprocess.Popen, ckpt: Path, epoch: int) -> None:
    """SIGKILLs ``proc`` as soon as its checkpoint is past ``epoch`` (1-based)."""
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        where = describe(ckpt)
        if where and where.startswith(f"end of epoch {epoch}"):
            proc.kill()
            break
        time.sleep(0.01)
    proc.communicate()


def test_kill_9_after_an_epoch_then_resume_auto_is_bitwise_exact(uninterrupted, tmp_path):
    proc = train_process(tmp_path)
    kill_after_epoch(proc, tmp_path / LAST, epoch=1)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert describe(tmp_path / LAST).startswith("end of epoch")
    assert not (tmp_path / "alphas.json").exists()
    resumed = train_process(tmp_path, "resume=auto")
    out = resumed.communicate()[0]
    assert resumed.returncode == 0, out[-2000:]
    assert "resuming from" in out
    assert_same_run(uninterrupted, tmp_path)
    assert history_epochs(tmp_path) == history_epochs(uninterrupted) == [0, 1, 2]


def crash_at_epoch_start(monkeypatch, epoch: int, cls=RunCheckpoint) -> None:
    """A crash as ``epoch`` (0-based, of any fit) starts: the previous epoch is on disk."""

    def crash(self, trainer, pl_module):
        if trainer.current_epoch == epoch:
            raise Crash

    monkeypatch.setattr(cls, "on_train_epoch_start", crash, raising=False)


def test_retrain_crash_after_an_epoch_resumes_exactly(tmp_path, monkeypatch):
    """Drop path and cutout draw from the RNGs: their states travel in the epoch's checkpoint."""
    retrain = ["stage=retrain", "genotype=darts_v2", "seed=2", "retrain.drop_path=0.3",
               "retrain.epochs=3", "trainer.limit_train_batches=2"]  # fmt: skip
    assert run_train(monkeypatch, tmp_path / "full", *retrain) == 0
    with monkeypatch.context() as m:
        crash_at_epoch_start(m, 2)
        assert run_train(m, tmp_path / "cut", *retrain) == 1
    assert describe(tmp_path / "cut/checkpoints/retrain/last.ckpt") == "end of epoch 2, step 4"
    assert run_train(monkeypatch, tmp_path / "cut", *retrain, "resume=auto") == 0
    assert_same_run(tmp_path / "full", tmp_path / "cut", stage="retrain")
    full, cut = (json.loads((d / "summary.json").read_text()) for d in (tmp_path / "full", tmp_path / "cut"))  # fmt: skip
    assert cut["test_acc"] == full["test_acc"]


PDARTS = [
    "stage=search", "strategy=pdarts", "seed=6", "trainer.limit_train_batches=2",
    "trainer.max_epochs=2", "strategy.arch_start_epoch=0",
    "strategy.stages=[{layers:3,keep:5,skip_dropout:0.1},{layers:4,keep:3,skip_dropout:0.4},"
    "{layers:5,skip_dropout:0.7}]",
]  # fmt: skip


@pytest.mark.slow
def test_pdarts_crash_inside_a_stage_resumes_exactly(tmp_path, monkeypatch):
    """A crash in the second depth stage, after its first epoch: the finished stage is not
    rerun, the second continues from its epoch checkpoint, and the history counts epochs on
    across stages without duplicates."""
    assert run_train(monkeypatch, tmp_path / "full", *PDARTS) == 0
    calls = []

    def crash(self, trainer, pl_module):
        calls.append(trainer.current_epoch)
        if len(calls) == 4:  # stage 0: epochs 0, 1; stage 1: epoch 0, then this one
            raise Crash

    with monkeypatch.context() as m:
        m.setattr(RunCheckpoint, "on_train_epoch_start", crash, raising=False)
        assert run_train(m, tmp_path / "cut", *PDARTS) == 1
    ckpt = tmp_path / "cut/checkpoints/search/stage1/last.ckpt"
    assert describe(ckpt) == "end of epoch 1, step 4"
    assert run_train(monkeypatch, tmp_path / "cut", *PDARTS, "resume=auto") == 0
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert json.loads((cut / "alphas.json").read_text()) == json.loads((full / "alphas.json").read_text())  # fmt: skip
    assert (cut / "genotype.json").read_text() == (full / "genotype.json").read_text()
    assert history_epochs(cut) == history_epochs(full) == list(range(6))
    stages = [json.loads(line)["stage"] for line in (cut / "search_history.jsonl").open()]
    assert stages == [0, 0, 1, 1, 2, 2]
    for i in range(3):
        rows = (cut / f"csv/search/stage{i}/metrics.csv").read_text()
        assert rows == (full / f"csv/search/stage{i}/metrics.csv").read_text() or i == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["retrain", "pdarts"])
def test_kill_9_retrain_and_staged_search_resume_exactly(tmp_path, kind):
    """The SIGKILL test of a retrain and of a staged (P-DARTS) search."""
    base = ["experiment=smoke", "logger=csv", "threads=1", "seed=5"]
    if kind == "retrain":
        extra = ["stage=retrain", "genotype=darts_v2", "retrain.epochs=4", "retrain.drop_path=0.2"]
        ckpt, stage = Path("checkpoints/retrain/last.ckpt"), "retrain"
    else:
        extra = [*PDARTS[1:], "trainer.limit_train_batches=4"]
        ckpt, stage = Path("checkpoints/search/stage1/last.ckpt"), "search/stage2"
    full, cut = tmp_path / "full", tmp_path / "cut"
    done, proc = train_process(full, *extra, base=base), train_process(cut, *extra, base=base)
    kill_after_epoch(proc, cut / ckpt, epoch=1)
    out = done.communicate()[0]
    assert done.returncode == 0, out[-2000:]
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = train_process(cut, *extra, "resume=auto", base=base)
    out = resumed.communicate()[0]
    assert resumed.returncode == 0, out[-2000:]
    assert_same_run(full, cut, stage=stage)
