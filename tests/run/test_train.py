"""``train.py`` end to end, in-process (Hydra's main with a patched argv), through every stage."""

from __future__ import annotations

import json
import sys

import pytest

from nas.core.genotype import load_genotype
from tests.helpers.paths import ROOT
from tests.helpers.runs import read_summary, run_train


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    run_dir = tmp_path_factory.mktemp("pipeline")
    try:
        assert run_train(mp, run_dir) == 0
    finally:
        mp.undo()
    return run_dir


def test_pipeline_writes_every_result(pipeline_dir):
    for name in ("alphas.json", "genotype.json", "summary.json", ".hydra/config.yaml"):
        assert (pipeline_dir / name).is_file(), name
    assert (pipeline_dir / "checkpoints/search/last.ckpt").is_file()
    assert (pipeline_dir / "checkpoints/retrain/last.ckpt").is_file()
    summary = read_summary(pipeline_dir)
    genotype = load_genotype(pipeline_dir / "genotype.json")
    assert (
        summary["stage"] == "pipeline"
        and summary["space"] == "darts"
        and summary["strategy"] == "darts"
    )
    assert summary["genotype"] == str(genotype)
    assert summary["params"] > 0 and summary["macs"] > 0
    assert 0.0 <= summary["test_acc"] <= 1.0 and summary["wall_time_s"] > 0
    alphas = json.loads((pipeline_dir / "alphas.json").read_text())
    assert len(alphas["edges"]) == 14 and len(alphas["alphas"]["normal"][0]) == 8


def test_discretize_reproduces_the_search_genotype(pipeline_dir, tmp_path, monkeypatch):
    code = run_train(
        monkeypatch, tmp_path, "stage=discretize", f"alphas={pipeline_dir / 'alphas.json'}"
    )
    assert code == 0
    assert load_genotype(tmp_path / "genotype.json") == load_genotype(
        pipeline_dir / "genotype.json"
    )
    assert read_summary(tmp_path)["stage"] == "discretize"


def test_retrain_a_saved_genotype_file(pipeline_dir, tmp_path, monkeypatch):
    code = run_train(
        monkeypatch, tmp_path, "stage=retrain", f"genotype={pipeline_dir / 'genotype.json'}"
    )
    assert code == 0
    summary = read_summary(tmp_path)
    assert summary["genotype"] == read_summary(pipeline_dir)["genotype"]
    assert summary["test_acc"] is not None


def test_profile_darts_v2_cifar_counts(tmp_path, monkeypatch):
    code = run_train(
        monkeypatch,
        tmp_path,
        "stage=profile",
        "genotype=darts_v2",
        "data=cifar10",
        "retrain.C=36",
        "retrain.layers=20",
        "data.root=/nonexistent",  # profile reads no data
    )
    assert code == 0
    summary = read_summary(tmp_path)
    assert summary["params"] == 3_349_342
    assert 500e6 < summary["macs"] < 560e6  # DARTS_V2 at CIFAR size: ~0.53 G multiply-adds


# Same seed, same α and genotype (and another seed, another search): tests/run/test_determinism.py.


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["stage=profile", "genotype=darts_v9"], "darts_v2"),
        (["stage=retrain", "genotype=missing/genotype.json"], "missing/genotype.json"),
        (["stage=discretize", "alphas=BAD"], "alphas"),
        (["stage=profile"], "genotype="),
        (["search_space.C=3"], "C"),
        (["search_space.ops=[none,conv_9x9]"], "conv_9x9"),
        (["data.input_shape=[1,2,2]"], "too small"),
        (
            [
                "strategy=darts_2nd",
                "strategy.weight_optimizer._target_=torch.optim.Adam",
                "~strategy.weight_optimizer.momentum",
            ],
            "SGD",
        ),
    ],
)
def test_bad_input_is_a_clear_error_with_no_result(
    tmp_path, monkeypatch, capsys, overrides, needle
):
    bad = tmp_path / "BAD"
    bad.write_text('{"space": "darts", "ops": []}')
    overrides = [o.replace("BAD", str(bad)) for o in overrides]
    code = run_train(monkeypatch, tmp_path / "run", *overrides)
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith("error:")
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / "genotype.json").exists()


def test_wandb_offline_logging_needs_no_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert run_train(monkeypatch, tmp_path, "stage=search", "logger=wandb") == 0
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_csv_logger_records_losses_lr_and_alpha(pipeline_dir):
    """One CSV file per stage (each resumes on its own)."""

    def header(stage: str) -> list[str]:
        path = pipeline_dir / "csv" / stage / "metrics.csv"
        return path.read_text().splitlines()[0].split(",")

    for key in (
        "search/train_loss_step",
        "search/val_acc",
        "lr/weights",
        "alpha/normal/0->2/sep_conv_3x3",
        "alpha_entropy/reduce",
    ):
        assert key in header("search"), key
    assert "retrain/test_acc" in header("retrain")
    assert "search/val_acc" not in header("retrain")


def test_help_lists_the_groups(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["train.py", "--help"])
    import train

    with pytest.raises(SystemExit):
        train.main()
    out = capsys.readouterr().out
    for group in ("search_space", "strategy", "data", "retrain", "experiment", "logger"):
        assert group in out


def test_multirun_gives_each_job_its_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "train.py",
            "-m",
            f"hydra.sweep.dir={tmp_path}",
            "experiment=smoke",
            "logger=csv",
            "stage=profile",
            "genotype=darts_v1,darts_v2",
        ],
    )
    import train

    try:
        train.main()
    except SystemExit as exit_:
        assert not exit_.code
    genotypes = {read_summary(tmp_path / str(i))["genotype"] for i in (0, 1)}
    assert len(genotypes) == 2
