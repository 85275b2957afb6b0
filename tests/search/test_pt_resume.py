"""DARTS-PT selection survives a crash: ``checkpoints/pt/last.ckpt`` is written after every
decision and tuning epoch, ``resume=auto`` continues from it exactly, and a checkpoint of
another config (or taken after another search) is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from nas.run import builders
from nas.run.pt_stage import pt_identity, search_stage_config
from nas.run.pt_stage import select as pt_select  # pt_select with the run's settings
from nas.run.schema import register_configs
from nas.search.pt_selection import (
    PT_KEY,
    PTCheckpoint,
    Tuner,
    is_pt_checkpoint,
    pt_checkpoint_path,
)
from tests.helpers.paths import ROOT

# A DARTS space with 5 edges and one node of 3 inputs: 6 steps × 2 cell types = 12 decisions,
# 5 tunings of 2 epochs of 2 batches between them.
SMALL = ["search_space.steps=2", "search_space.multiplier=2"]
PT = ["selection=pt", "selection.tune_epochs=2", "selection.tune_batches=2"]


def config(*extra: str):
    register_configs()
    overrides = ["experiment=smoke", "logger=none", "threads=1", "seed=4", *SMALL, *PT, *extra]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def searched(cfg):
    """A freshly built module and datamodule, as the search would hand them over (no fit:
    the weights of a given seed; PT resumes against this state's fingerprint)."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = builders.search_module(cfg, builders.space_from_config(cfg))
    data = builders.search_data(cfg)
    data.setup()
    return module, data


def state_of(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class Crash(RuntimeError):
    pass


def test_resume_after_a_crash_in_process_matches_an_uninterrupted_selection(
    tmp_path, monkeypatch, capsys
):
    # GDAS: the tuning steps draw from the strategy's own random stream (Gumbel noise), which
    # the checkpoint carries as well.
    strategy = "strategy=gdas"
    cfg = config(strategy)
    module, data = searched(cfg)
    full = pt_select(cfg, module, data)  # no run_dir: no checkpoint
    full_state = state_of(module)

    # A crash right after the 7th write (decision 5 of 12 and both tuning epochs after
    # decision 4 are saved: the 7th is the first tuning epoch after decision 6).
    writes = []
    save = PTCheckpoint.save

    def crashing_save(self, progress):
        save(self, progress)
        writes.append((progress["decisions"], progress["tuned"]))
        if len(writes) == 7:
            raise Crash

    monkeypatch.setattr(PTCheckpoint, "save", crashing_save)
    module, data = searched(cfg)
    with pytest.raises(Crash):
        pt_select(cfg, module, data, tmp_path)
    assert writes == [(1, 0), (2, 0), (2, 1), (2, 2), (3, 0), (4, 0), (4, 1)]
    monkeypatch.setattr(PTCheckpoint, "save", save)

    cfg = config(strategy, "resume=auto")
    module, data = searched(cfg)
    capsys.readouterr()
    resumed = pt_select(cfg, module, data, tmp_path)
    out = capsys.readouterr().out
    assert "pt: resuming DARTS-PT from" in out
    assert "after decision 4 of 12, 1 tuning epoch(s) after it done" in out
    assert resumed == full
    assert_same_tensors(state_of(module), full_state)
    ckpt = torch.load(pt_checkpoint_path(tmp_path), map_location="cpu", weights_only=False)
    assert ckpt[PT_KEY]["decisions"] == 12 and ckpt[PT_KEY]["total"] == 12

    # resume=auto without a PT checkpoint starts from the beginning, saying so in one line.
    module, data = searched(cfg)
    pt_select(cfg, module, data, tmp_path / "elsewhere")
    lines = [s for s in capsys.readouterr().out.splitlines() if "found no DARTS-PT" in s]
    assert len(lines) == 1 and "starting DARTS-PT from the beginning" in lines[0]


def test_checkpoint_round_trip_restores_every_state(tmp_path):
    cfg = config()
    module, data = searched(cfg)
    tuner = Tuner(module, data, 2, 4, 0.1, batches=2, schedule="cosine")
    tuner.run_epoch()  # optimizer momentum, a scheduler step, data and RNG moved on
    torch.rand(3)
    path = tmp_path / "checkpoints" / "pt" / "last.ckpt"
    progress = {"decisions": 1, "total": 12, "tuned": 1, "report": {"ops": []}}
    ck = PTCheckpoint(path, pt_identity(cfg), module, data, tuner)
    ck.search_fingerprint = "f"
    ck.save(progress)
    assert path.is_file() and is_pt_checkpoint(path)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert not list(path.parent.glob(".*tmp"))  # the temporary file was renamed into place
    saved_state, saved_tuner = state_of(module), tuner.state_dict()
    saved_gens = {k: g.get_state() for k, g in data._sampler_gens.items()}
    expected_rand = torch.rand(3)

    # Everything moves on (or starts afresh), then the checkpoint puts it back.
    module2, data2 = searched(cfg)
    tuner2 = Tuner(module2, data2, 2, 4, 0.1, batches=2, schedule="cosine")
    tuner2.run_epoch()
    tuner2.run_epoch()
    ck2 = PTCheckpoint(path, pt_identity(cfg), module2, data2, tuner2)
    ck2.search_fingerprint = "f"
    assert ck2.restore(ck2.load(path)) == progress
    assert_same_tensors(state_of(module2), saved_state)
    assert torch.equal(torch.rand(3), expected_rand)
    assert {k: g.get_state() for k, g in data2._sampler_gens.items()}.keys() == saved_gens.keys()
    for k, g in data2._sampler_gens.items():
        assert torch.equal(g.get_state(), saved_gens[k]), k
    assert tuner2.sched.state_dict() == saved_tuner["sched"]
    assert tuner2.lr == tuner.lr
    for p, q in zip(tuner.w_opt.param_groups[0]["params"], tuner2.w_opt.param_groups[0]["params"]):
        s1, s2 = tuner.w_opt.state.get(p, {}), tuner2.w_opt.state.get(q, {})
        assert s1.keys() == s2.keys()
        for k in s1:
            assert torch.equal(torch.as_tensor(s1[k]), torch.as_tensor(s2[k]))
    # The next tuning epoch goes on identically from both.
    tuner.run_epoch()
    tuner2.run_epoch()
    assert_same_tensors(state_of(module2), state_of(module))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_checkpoint_of_another_config_or_search_is_refused(tmp_path):
    cfg = config()
    module, data = searched(cfg)
    path = pt_checkpoint_path(tmp_path)
    PTCheckpoint(path, pt_identity(cfg), module, data, None).save({"decisions": 0})

    other = config("selection.criterion=loss", "strategy.arch_optimizer.lr=0.01")
    with pytest.raises(ValueError, match="belongs to a different run") as err:
        PTCheckpoint(path, pt_identity(other), module, data, None).load(path)
    assert "selection.criterion: 'acc' in the checkpoint, 'loss' now" in str(err.value)
    assert "strategy.arch_optimizer.lr" in str(err.value)
    with pytest.raises(ValueError, match="belongs to a different run"):  # through pt_select
        pt_select(config("resume=auto", "selection.criterion=loss"), module, data, tmp_path)

    # Same config, but the search ended elsewhere (continued with more epochs, say).
    with torch.no_grad():
        next(module.supernet.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="taken after a different search"):
        PTCheckpoint(path, pt_identity(cfg), module, data, None).load(path)

    # The search's own checkpoint is no DARTS-PT checkpoint.
    lightning_like = tmp_path / "search.ckpt"
    torch.save({"state_dict": {}}, lightning_like)
    assert not is_pt_checkpoint(lightning_like) and not is_pt_checkpoint(tmp_path / "none")
    with pytest.raises(ValueError, match="not a DARTS-PT checkpoint"):
        PTCheckpoint(path, pt_identity(cfg), module, data, None).load(lightning_like)
    # resume=<a DARTS-PT checkpoint>: the search stage resumes as resume=auto.
    assert search_stage_config(config(f"resume={path}")).resume == "auto"
    assert search_stage_config(config(f"resume={lightning_like}")).resume == str(lightning_like)


def train(run_dir: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "train.py", f"hydra.run.dir={run_dir}", "experiment=smoke",
            "stage=search", "logger=csv", "threads=1", "seed=11", *SMALL, *PT, *extra]  # fmt: skip
    log = open(run_dir.parent / f"{run_dir.name}.log", "w")  # noqa: SIM115 - closed by the OS
    return subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)


def progress(path: Path) -> dict | None:
    try:  # atomically replaced: either the old file or the new one
        return torch.load(path, map_location="cpu", weights_only=False)[PT_KEY]
    except Exception:
        return None


def results(run_dir: Path) -> tuple:
    summary = json.loads((run_dir / "summary.json").read_text())
    return (
        json.loads((run_dir / "alphas.json").read_text()),
        (run_dir / "genotype.json").read_text(),
        summary["selection"],
    )


@pytest.mark.slow  # 17 s; the in-process crash test covers the default run
def test_killed_selection_resumes_to_the_uninterrupted_result(tmp_path):
    """The honest one: ``train.py`` in a process, SIGKILLed inside DARTS-PT, rerun with
    ``resume=auto``; alphas.json, genotype.json and the PT report equal an uninterrupted run's."""
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full_dir.mkdir(), cut_dir.mkdir()
    full = train(full_dir)
    cut = train(cut_dir)
    ckpt = pt_checkpoint_path(cut_dir)
    deadline = time.monotonic() + 600
    seen = None
    while cut.poll() is None and time.monotonic() < deadline:
        seen = progress(ckpt) if ckpt.is_file() else None
        if seen is not None and (seen["tuned"] >= 1 or seen["decisions"] >= 3):
            break
        time.sleep(0.02)
    assert cut.poll() is None, "the run finished before it could be killed"
    os.kill(cut.pid, signal.SIGKILL)
    assert cut.wait(60) == -signal.SIGKILL
    at = progress(ckpt)  # where the killed run's last checkpoint stands
    assert at is not None and 1 <= at["decisions"] < at["total"] == 12
    assert not (cut_dir / "summary.json").exists()

    resumed = train(cut_dir, "resume=auto")
    assert resumed.wait(600) == 0, (tmp_path / "cut.log").read_text()[-3000:]
    assert full.wait(600) == 0, (tmp_path / "full.log").read_text()[-3000:]
    log = (tmp_path / "cut.log").read_text()
    assert "search: resuming from" in log
    assert f"pt: resuming DARTS-PT from {ckpt}: after decision {at['decisions']} of 12" in log
    assert results(cut_dir) == results(full_dir)
