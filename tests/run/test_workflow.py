"""What a run shows a person: W&B runs read back from their offline files, the same figures as
PNGs on disk with every logger, the per-epoch history, the banner and the epoch lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.core.genotype import resolve_genotype
from nas.search.report import edges_changed, mean_entropy
from tests.helpers.runs import read_summary, run_train
from tests.helpers.wandb_records import read_run

SEARCH_FIGURES = ("alpha_normal", "alpha_reduce", "cell_normal", "cell_reduce")


def assert_picture(path: Path) -> None:
    """A PNG that decodes and is not blank (many colours, visible contrast)."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100, path
    assert pixels.std() > 10, f"{path} looks blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, path


def wandb_runs(run_dir: Path) -> dict[str, dict]:
    runs = [read_run(d) | {"dir": d} for d in sorted((run_dir / "wandb").glob("offline-run-*"))]
    return {r["run"]["job_type"]: r for r in runs}


@pytest.fixture(scope="module")
def wandb_pipeline(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    run_dir = tmp_path_factory.mktemp("wandb_pipeline")
    try:
        code = run_train(
            mp,
            run_dir,
            "trainer.max_epochs=2",
            "seed=3",
            "logger.alpha_images=true",
            "logger.final_figures=true",
            logger="wandb",
        )
        assert code == 0
    finally:
        mp.undo()
    return run_dir


def test_search_run_logs_the_story(wandb_pipeline):
    search = wandb_runs(wandb_pipeline)["search"]
    history = search["history"]
    # Trajectories: one value per epoch.
    for key in ("alpha_entropy", "genotype/skip_connect", "genotype/param_free_ops",
                "genotype/edges_changed", "lr/arch", "lr/weights"):  # fmt: skip
        assert len(history[key]) == 2, key
    assert all(0 < h <= np.log(8) + 1e-6 for h in history["alpha_entropy"])
    # Per-epoch images of both cell types, and the final ones, as files in the run's media.
    for name in SEARCH_FIGURES:
        assert history[f"search/{name}/_type"] == ["images/separated"] * 2, name
        assert history[f"final/{name}/_type"] == ["images/separated"], name
    media = list((search["dir"] / "files" / "media" / "images").rglob("*.png"))
    assert len(media) == 3 * len(SEARCH_FIGURES)
    assert_picture(media[0])
    assert "search/genotype/_type" in history  # the genotype as a text table
    artifacts = {a["type"]: a for a in search["artifacts"]}
    assert artifacts["genotype"]["files"] == ["genotype.json"]
    assert artifacts["alphas"]["files"] == ["alphas.json"]
    assert artifacts["model"]["files"] == ["last.ckpt"]
    assert artifacts["genotype"]["name"] == "genotype-darts-darts-digits-seed3"
    summary = read_summary(wandb_pipeline)
    assert search["summary"]["genotype"] == summary["genotype"]
    assert search["summary"]["skip_connect"] == summary["skip_connect"]


def test_retrain_run_is_grouped_with_and_linked_to_its_search(wandb_pipeline):
    runs = wandb_runs(wandb_pipeline)
    search, retrain = runs["search"], runs["retrain"]
    assert retrain["run"]["group"] == search["run"]["group"]
    assert retrain["config"]["search_run"]["run_id"] == search["run"]["id"]
    assert retrain["config"]["search_run"]["artifacts"]["genotype"].startswith("genotype-")
    artifacts = {a["name"]: a for a in retrain["artifacts"]}
    assert set(artifacts) == {
        "retrained-darts-darts-digits-seed3",
        "exported-darts-darts-digits-seed3",
    }
    # What a deployment pulls: the TorchScript file and its sidecar (input shape, mean/std).
    assert sorted(artifacts["exported-darts-darts-digits-seed3"]["files"]) == [
        "model.json",
        "model.pt",
    ]
    assert retrain["summary"]["latency_ms"] == pytest.approx(
        read_summary(wandb_pipeline)["latency_ms"]
    )
    assert "retrain/test_acc" in retrain["history"]
    summary = read_summary(wandb_pipeline)
    assert retrain["summary"]["test_acc"] == pytest.approx(summary["test_acc"])
    assert summary["wandb"]["search"]["run_id"] == search["run"]["id"]
    assert summary["wandb"]["retrain"]["search_run_id"] == search["run"]["id"]


def test_retrain_stage_joins_the_group_of_the_search_that_wrote_its_genotype(
    wandb_pipeline, tmp_path, monkeypatch
):
    genotype = wandb_pipeline / "genotype.json"
    code = run_train(
        monkeypatch, tmp_path, "stage=retrain", f"genotype={genotype}", "seed=3", logger="wandb"
    )
    assert code == 0
    (retrain,) = wandb_runs(tmp_path).values()
    search_id = read_summary(wandb_pipeline)["wandb"]["search"]["run_id"]
    assert retrain["run"]["group"] == read_summary(wandb_pipeline)["wandb"]["search"]["group"]
    assert retrain["config"]["search_run"]["run_id"] == search_id


# logger=none (the same files, no metrics folder) runs with -m slow: 9 s on 2 cores.
@pytest.mark.parametrize("logger", ["csv", pytest.param("none", marks=pytest.mark.slow)])
def test_figures_and_history_on_disk_without_wandb(logger, tmp_path, monkeypatch, capsys):
    code = run_train(
        monkeypatch, tmp_path, "stage=search", "trainer.max_epochs=2",
        "trainer.enable_progress_bar=true", "logger.alpha_images=true", "logger.final_figures=true", logger=logger,
    )  # fmt: skip
    assert code == 0
    summary = read_summary(tmp_path)
    assert set(summary["figures"]) == set(SEARCH_FIGURES)
    for path in summary["figures"].values():
        assert_picture(Path(path))
    for epoch in (1, 2):  # counted from 1, as the console counts
        for name in SEARCH_FIGURES:
            assert (
                tmp_path / "figures" / "search" / f"epoch_{epoch:03d}" / f"{name}.png"
            ).is_file()
    history = [
        json.loads(line) for line in (tmp_path / "search_history.jsonl").read_text().splitlines()
    ]
    assert [h["epoch"] for h in history] == [0, 1]
    assert history[-1]["genotype"] == summary["genotype"]
    assert history[-1]["genotype/skip_connect"] == summary["skip_connect"]
    out = capsys.readouterr().out
    # The banner names the composed choices, the epoch lines the short metric names.
    for text in ("stage=search", "space", "darts", "strategy", "digits", "device", "run dir"):
        assert text in out, text
    lines = [line for line in out.splitlines() if line.startswith("[search] epoch")]
    assert len(lines) == 2 and "skip_connect" in lines[-1] and "alpha_entropy" in lines[-1]
    for name in ("train_loss", "train_acc", "arch_acc", "val_acc", "left"):
        assert f" {name} " in lines[-1], name
    assert "search/val_acc" not in out  # no duplicate long names
    if logger == "csv":
        header = (tmp_path / "csv" / "search" / "metrics.csv").read_text().splitlines()[0]
        for key in ("genotype/skip_connect", "alpha_entropy", "genotype/edges_changed"):
            assert key in header


def test_edges_changed_counts_new_kept_edges():
    v1, v2 = resolve_genotype("darts_v1"), resolve_genotype("darts_v2")
    assert edges_changed(None, v1) == 0 and edges_changed(v1, v1) == 0
    moved = edges_changed(v1, v2)
    assert 0 < moved <= 16


def test_mean_entropy_is_log_k_when_uniform():
    import torch

    assert mean_entropy(torch.full((14, 8), 1 / 8)) == pytest.approx(np.log(8))
    assert mean_entropy(torch.eye(8)[:5]) == pytest.approx(0.0, abs=1e-9)
