"""Exact resume, preemption by SIGTERM, refused foreign checkpoints, and the run guards."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers.runs import alphas, assert_same_run, run_train, run_with_sigterm

SEARCH = ["stage=search", "seed=1", "trainer.limit_train_batches=3"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    run_dir = tmp_path_factory.mktemp("full")
    try:
        assert run_train(mp, run_dir, *SEARCH, "trainer.max_epochs=2") == 0
    finally:
        mp.undo()
    return run_dir


@pytest.mark.slow  # tests/run/test_crash_resume.py resumes epoch-end checkpoints by default
def test_resume_at_epoch_boundary_is_bitwise_exact(uninterrupted, tmp_path, monkeypatch):
    # Stopped by max_steps after epoch 1 of 2 (max_epochs sets the cosine schedule, so it stays).
    # Two optimizers step per search batch, so 3 batches are 6 optimizer steps.
    assert (
        run_train(monkeypatch, tmp_path, *SEARCH, "trainer.max_epochs=2", "trainer.max_steps=6")
        == 0
    )
    assert run_train(monkeypatch, tmp_path, *SEARCH, "trainer.max_epochs=2", "resume=auto") == 0
    assert_same_run(uninterrupted, tmp_path)


@pytest.mark.slow  # mid-epoch resume: tests/run/test_crash_resume.py by default
def test_max_steps_mid_epoch_then_resume_is_bitwise_exact(uninterrupted, tmp_path, monkeypatch):
    """Stopped by max_steps after batch 2 of 3 (2 optimizer steps per batch): the checkpoint is
    the mid-epoch state (not the cut-short epoch's end), and resuming needs no warning."""
    import warnings

    args = (*SEARCH, "trainer.max_epochs=2")
    assert run_train(monkeypatch, tmp_path, *args, "trainer.max_steps=4") == 0
    saved = torch.load(
        tmp_path / "checkpoints/search/last.ckpt", map_location="cpu", weights_only=False
    )
    assert saved["global_step"] == 4 and saved["epoch"] == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        assert run_train(monkeypatch, tmp_path, *args, "resume=auto") == 0
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert_same_run(uninterrupted, tmp_path)


def test_sigterm_saves_and_resume_is_bitwise_exact(uninterrupted, tmp_path, monkeypatch):
    """A real SIGTERM mid-epoch (after batch 2 of 3; 2 optimizer steps per batch): checkpoint,
    clean exit 3, then resume=auto."""
    assert run_with_sigterm(monkeypatch, tmp_path, *SEARCH, "trainer.max_epochs=2") == 3
    saved = torch.load(
        tmp_path / "checkpoints/search/last.ckpt", map_location="cpu", weights_only=False
    )
    assert saved["global_step"] == 4
    assert not (tmp_path / "alphas.json").exists()  # no result that looks final
    assert run_train(monkeypatch, tmp_path, *SEARCH, "trainer.max_epochs=2", "resume=auto") == 0
    assert_same_run(uninterrupted, tmp_path)


def test_checkpoint_of_another_config_is_refused(uninterrupted, tmp_path, monkeypatch, capsys):
    ckpt = uninterrupted / "checkpoints/search/last.ckpt"
    code = run_train(
        monkeypatch, tmp_path, *SEARCH, "trainer.max_epochs=3", f"resume={ckpt}",
        "strategy.weight_optimizer.lr=0.1",
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "strategy.weight_optimizer.lr: 0.025 in the checkpoint, 0.1 now" in err


def test_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path, monkeypatch, capsys):
    assert run_train(monkeypatch, tmp_path / "a", *SEARCH, "resume=nope.ckpt") == 2
    assert "nope.ckpt" in capsys.readouterr().err
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert run_train(monkeypatch, tmp_path / "b", *SEARCH, f"resume={bad}") == 2
    assert "cannot be read" in capsys.readouterr().err


def test_resume_auto_without_checkpoint_starts_fresh(uninterrupted, tmp_path, monkeypatch, capsys):
    assert run_train(monkeypatch, tmp_path, *SEARCH, "trainer.max_epochs=2", "resume=auto") == 0
    assert "resume=auto found no checkpoint" in capsys.readouterr().out  # not silently
    assert_same_run(uninterrupted, tmp_path)


def test_retrain_resume_is_bitwise_exact(tmp_path, monkeypatch):
    """Drop path draws from the global RNG: its state travels in the checkpoint."""
    retrain = ["stage=retrain", "genotype=darts_v2", "seed=2", "retrain.drop_path=0.3"]
    assert run_train(monkeypatch, tmp_path / "full", *retrain, "retrain.epochs=2") == 0
    assert (
        run_train(
            monkeypatch, tmp_path / "split", *retrain, "retrain.epochs=2", "trainer.max_steps=2"
        )
        == 0
    )
    assert (
        run_train(monkeypatch, tmp_path / "split", *retrain, "retrain.epochs=2", "resume=auto") == 0
    )
    assert_same_run(tmp_path / "full", tmp_path / "split", stage="retrain")


def test_diverging_run_stops_with_clear_message(tmp_path, monkeypatch, capsys):
    code = run_train(
        monkeypatch, tmp_path, *SEARCH, "strategy.weight_optimizer.lr=1e38", "strategy.grad_clip=0"
    )
    assert code == 4
    err = capsys.readouterr().err
    assert "Non-finite values" in err and "learning rate" in err
    assert not (tmp_path / "alphas.json").exists()


def test_full_disk_is_reported_at_start(tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    assert run_train(monkeypatch, tmp_path, *SEARCH) == 2
    assert "MiB free" in capsys.readouterr().err


def test_skip_mode_counts_nonfinite_steps_and_finishes(tmp_path, monkeypatch):
    """nonfinite=skip: steps whose loss or gradient is non-finite are skipped and counted."""
    import nas.search.module

    calls = {"n": 0}
    original = nas.search.module.SearchModule.loss

    def poisoned(self, batch, alphas, params=None, **kw):
        loss, logits = original(self, batch, alphas, params, **kw)
        calls["n"] += 1
        if calls["n"] % 2 == 0:  # every second loss (the weight step's) is NaN
            loss = loss * float("nan")
        return loss, logits

    monkeypatch.setattr(nas.search.module.SearchModule, "loss", poisoned)
    assert run_train(monkeypatch, tmp_path, *SEARCH, "nonfinite=skip") == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["skipped_steps"] == 3  # every weight step of the 3 batches
    assert all(
        all(map(lambda r: all(v == v for v in r), rows))
        for rows in alphas(tmp_path)["alphas"].values()
    )


# ProxylessNAS / FBNet / GDAS on the mbconv chain with the proxyless_mobile schedule options (α every 2
# steps, label smoothing, the warm-up lr cosine that restarts): 2 batches per epoch (smoke's 64
# synthetic samples, half of them for α), the α step on batch 1 only: 3 optimizer steps per
# epoch, so max_steps=7 stops after the first batch of epoch 2, past the lr restart.
HARDWARE = [
    "stage=search", "experiment=smoke", "search_space=mbconv", "data=synthetic", "seed=2",
    "trainer.max_epochs=3", "strategy.arch_start_epoch=0",
    "strategy.arch_every=2", "strategy.label_smoothing=0.1", "strategy.lr_warmup_epochs=1",
]  # fmt: skip


def params_latency(net, x, device, repeats, warmup) -> dict[str, float]:
    """A latency "measurement" that repeats exactly (1 ms + 1 ms per 1,000 parameters):
    real timings differ between the runs compared."""
    return {"latency_ms": 1.0 + sum(p.numel() for p in net.parameters()) / 1000}


@pytest.mark.parametrize(
    "strategy",
    [
        "fbnet",
        pytest.param("proxyless", marks=pytest.mark.slow),
        pytest.param("gdas", marks=pytest.mark.slow),
    ],
)
def test_scheduled_strategies_resume_bitwise_exact(strategy, tmp_path, monkeypatch):
    """Mid-epoch resume restores what each epoch's start set (Lightning skips that hook on a
    mid-epoch restart): the Gumbel temperature of FBNet / GDAS, the search options above.
    (GDAS by SIGTERM in the default run: tests/run/test_determinism.py.)"""
    monkeypatch.setattr("nas.hardware.latency.measure_latency", params_latency)
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = (*HARDWARE, f"strategy={strategy}")
    assert run_train(monkeypatch, full, *args) == 0
    assert run_train(monkeypatch, cut, *args, "trainer.max_steps=7") == 0
    saved = torch.load(cut / "checkpoints/search/last.ckpt", map_location="cpu", weights_only=False)
    assert (saved["global_step"], saved["epoch"]) == (7, 2)
    assert run_train(monkeypatch, cut, *args, "resume=auto") == 0
    assert_same_run(full, cut)
