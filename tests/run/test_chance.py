"""The chance comparison (``nas/run/chance.py``) and the default job's search leaving uniform α."""

from __future__ import annotations

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from nas.core.genotype import kept_edges, load_genotype, resolve_genotype
from nas.run import builders
from nas.run.chance import free_counts, random_genotypes, train_random_cell, verdict
from supernet.spaces.darts import DARTS_OPS, DartsSpace
from tests.helpers.config import compose_cfg
from tests.helpers.runs import run_train_py


def darts_space() -> DartsSpace:
    return DartsSpace(input_shape=(1, 8, 8), num_classes=10, ops=DARTS_OPS, C=4, layers=3)


@pytest.mark.parametrize("zoo_name", ["darts_v1", "darts_v2"])
def test_random_cells_match_the_found_cells_size_and_repeat_with_the_seed(zoo_name):
    space, found = darts_space(), resolve_genotype(zoo_name)
    cells = random_genotypes(space, found, 4, seed=0)
    assert len({str(g) for g in cells}) == 4 and str(found) not in {str(g) for g in cells}
    for g in cells:
        space.validate_genotype(g)
        assert free_counts(g) == free_counts(found)
        for edges in kept_edges(g).values():  # two distinct inputs per node, no "none"
            for node in {n for _, _, n in edges}:
                inputs = [i for _, i, n in edges if n == node]
                assert len(inputs) == 2 and len(set(inputs)) == 2
            assert all(op != "none" for op, _, _ in edges)
    assert [str(g) for g in random_genotypes(space, found, 4, seed=0)] == [str(g) for g in cells]
    assert [str(g) for g in random_genotypes(space, found, 4, seed=1)] != [str(g) for g in cells]


def test_verdict_reads_the_found_accuracy_against_the_random_spread():
    assert verdict(0.99, [0.95, 0.97]).startswith("search beat chance")
    assert verdict(0.96, [0.95, 0.97]).startswith("no evidence")
    assert verdict(0.97, [0.95, 0.97]).startswith("no evidence")  # a tie is no evidence
    assert verdict(0.90, [0.95, 0.97]).startswith("search did worse")
    assert "95.00-97.00%" in verdict(0.96, [0.97, 0.95])


def test_the_chance_comparison_is_on_for_digits_only():
    """Real data gets no chance comparison: the default is off, only the digits scale sets it."""
    assert compose_cfg(["data=cifar10"]).chance.cells == 0
    assert compose_cfg(["retrain=darts_cifar"]).chance.cells == 0
    assert compose_cfg([]).chance.cells > 0  # the default job (digits)


@pytest.fixture(scope="module")
def chance_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    run_dir = tmp_path_factory.mktemp("chance")
    try:
        code = run_train_py(
            mp, run_dir, "logger=none", "experiment=smoke", "chance.cells=2", "threads=1"
        )
        assert code == 0
    finally:
        mp.undo()
    return run_dir


def test_pipeline_trains_n_random_cells_and_writes_the_verdict(chance_run, capsys):
    summary = json.loads((chance_run / "summary.json").read_text())
    chance = summary["chance"]
    found = load_genotype(chance_run / "genotype.json")
    assert chance["cells"] == 2 and len(chance["random_genotypes"]) == 2
    assert len(chance["random_test_acc"]) == 2 and len(chance["random_params"]) == 2
    assert all(0.0 <= a <= 1.0 for a in chance["random_test_acc"])
    assert chance["found_test_acc"] == summary["test_acc"]
    assert chance["verdict"] == verdict(summary["test_acc"], chance["random_test_acc"])
    assert chance["param_free_ops"] == free_counts(found)
    for i in (1, 2):  # each trained by its own Trainer, checkpoints beside the retrain's
        assert (chance_run / "checkpoints" / f"chance{i}" / "last.ckpt").is_file()
    # The found cell's own model and exports are not overwritten by the random cells'.
    assert (chance_run / "checkpoints" / "retrain" / "last.ckpt").is_file()


def test_random_cells_are_trained_exactly_as_the_found_one(chance_run, tmp_path):
    """Same builders, recipe and seed scheme: the found genotype put through the random cells'
    training reproduces the pipeline's retrained test accuracy."""
    torch.set_num_threads(1)
    cfg = OmegaConf.load(chance_run / ".hydra" / "config.yaml")
    space = builders.space_from_config(cfg)
    found = load_genotype(chance_run / "genotype.json")
    _, acc = train_random_cell(cfg, tmp_path, space, found, 9)
    summary = json.loads((chance_run / "summary.json").read_text())
    assert acc == summary["test_acc"]


@pytest.mark.slow
def test_default_job_search_leaves_uniform_alpha(tmp_path, monkeypatch):
    """The default job's search learns at its scale: the mean entropy of α's op distributions
    (search_history.jsonl, what the console prints as H(α)) falls every epoch and ends clearly
    below the uniform log 8."""
    code = run_train_py(
        monkeypatch,
        tmp_path,
        "logger=none",
        "stage=search",
        "logger.alpha_images=false",
        "threads=1",
    )
    assert code == 0
    lines = (tmp_path / "search_history.jsonl").read_text().splitlines()
    entropy = [json.loads(line)["alpha_entropy"] for line in lines]
    assert len(entropy) >= 2
    assert all(b < a for a, b in zip(entropy, entropy[1:])), entropy
    assert entropy[-1] < 0.95 * math.log(len(DARTS_OPS)), entropy
