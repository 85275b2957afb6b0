"""Bad input that used to get through: non-positive epochs, keys added with ``+``/``++``, an
option of another search space, errors without the full key, and the exit status of each."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nas.run import stages
from nas.run.input_check import check_inputs
from nas.run.schema import check_known_keys
from supernet.spaces import build_space
from tests.helpers.config import compose_cfg
from tests.helpers.paths import ROOT
from tests.helpers.runs import run_train

# Every recipe and group option passes the input check: tests/run/test_config.py
# (test_every_group_option_composes), on the same composed configs.


@pytest.mark.parametrize(
    "override, key, valid",
    [
        ("+strategy.lrr=0.1", "strategy.lrr=0.1", "weight_lr_min"),
        ("++strategy.lrr=0.1", "strategy.lrr=0.1", "weight_lr_min"),
        ("+foo=1", "foo=1", "search_space"),
        ("+trainer.max_epoch=3", "trainer.max_epoch=3", "max_epochs"),
        ("+data.rooot=x", "data.rooot='x'", "root"),
        ("++strategy.weight_optimizer.lrr=0.1", "strategy.weight_optimizer.lrr=0.1", "momentum"),
        ("+strategy.sampler.tau=2", "strategy.sampler.tau=2", "no arguments"),
        ("+retrain.optimizer.momentun=0.9", "retrain.optimizer.momentun=0.9", "momentum"),
    ],
)
def test_keys_added_with_plus_fail_naming_the_key_and_the_valid_ones(override, key, valid):
    with pytest.raises(ValueError) as err:
        check_known_keys(compose_cfg([override]))
    assert key in str(err.value) and valid in str(err.value)


def test_an_unknown_argument_of_a_listed_component_fails():
    cfg = compose_cfg(["strategy=fbnet", "+strategy.regularizers.0.wieght=1"])
    with pytest.raises(ValueError, match=r"strategy\.regularizers\[0\]\.wieght=1 .*HardwareCost"):
        check_known_keys(cfg)


def test_an_unknown_key_of_a_progressive_stage_fails():
    cfg = compose_cfg(["strategy=pdarts", "+strategy.stages.0.epoch=3"])
    with pytest.raises(ValueError, match=r"strategy\.stages\[0\]\.epoch=3 .*epochs"):
        check_known_keys(cfg)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["stage=search", "trainer.max_epochs=-1"], "trainer.max_epochs=-1"),
        (["stage=pipeline", "trainer.max_epochs=0"], "trainer.max_epochs=0"),
        (["stage=retrain", "genotype=darts_v2", "retrain.epochs=0"], "retrain.epochs=0"),
        (["stage=pipeline", "retrain.epochs=-1"], "retrain.epochs=-1"),
        (["stage=search", "strategy.arch_start_epoch=-1"], "strategy.arch_start_epoch=-1"),
        (["strategy=pdarts", "stage=search", "strategy.stages.0.epochs=0"], "stages[0].epochs"),
        (["stage=search", "checkpoint.every_n_steps=-5"], "checkpoint.every_n_steps=-5"),
        (["stage=retrain", "genotype=darts_v2", "checkpoint.every_minutes=-1"], "every_minutes"),
    ],
)
def test_non_positive_epochs_are_refused(overrides, key):
    with pytest.raises(ValueError) as err:
        check_inputs(compose_cfg(overrides))
    assert key in str(err.value)


def test_epochs_of_a_stage_that_does_not_run_are_not_checked():
    check_inputs(compose_cfg(["stage=search", "retrain.epochs=0"]))
    check_inputs(compose_cfg(["stage=retrain", "genotype=darts_v2", "trainer.max_epochs=0"]))


@pytest.mark.parametrize(
    "space, options, message",
    [
        (
            "darts",
            {"se": True},
            "search_space.se=True is an option of search_space=mbconv; search_space=darts "
            "takes: ops, C, layers",
        ),
        (
            "nb201",
            {"pool_bn": False},
            "search_space.pool_bn=False is an option of search_space=darts",
        ),
        ("mbconv", {"group_edges": False}, "option of search_space=darts / nb201"),
        ("darts", {"sse": True}, "search_space.sse=True is not an option of any search space"),
        ("mbconv", {"steps": 2}, "search_space.steps=2 is an option of search_space=darts / nb201"),
        ("nb201", {"multiplier": 4}, "search_space.multiplier=4 does not apply"),
        ("darts", {"C": 0}, "search_space.C=0"),
        ("darts", {"layers": 0}, "search_space.layers=0"),
        ("nb201", {"C": 0}, "search_space.C=0"),
        ("mbconv", {"C": 0}, "search_space.C=0"),
        ("darts", {"ops": ["none", "conv_9x9"]}, "search_space.ops="),
        ("darts", {"reduce_cell": "frc"}, "search_space.reduce_cell='frc'"),
        ("darts", {"kernel": "cuda"}, "search_space.kernel='cuda'. Valid choices are: auto"),
    ],
)
def test_space_options_fail_naming_the_full_key(space, options, message):
    with pytest.raises(ValueError) as err:
        build_space(space, (3, 8, 8), 10, **{"C": 4, "layers": 1, **options})
    assert message in str(err.value)


def test_another_spaces_key_at_its_default_changes_nothing():
    """The config's ``search_space`` node holds every space's keys (one typed schema)."""
    space = build_space("darts", (3, 8, 8), 10, C=4, layers=3, se=False, benchmark_file=None)
    assert space.C == 4 and not hasattr(space, "se")


def test_a_crash_inside_the_run_keeps_exit_status_1(tmp_path, monkeypatch):
    def crash(cfg, run_dir):
        raise RuntimeError("a bug")

    monkeypatch.setattr(stages, "run", crash)
    assert run_train(monkeypatch, tmp_path / "run", "stage=search") == 1


def train(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    env.pop("WANDB_API_KEY", None)
    cmd = [sys.executable, "train.py", f"hydra.run.dir={tmp_path}", "experiment=smoke", "threads=1"]
    return subprocess.run(
        [*cmd, *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["logger=none", "search_space=dartz"], "darts"),  # Hydra's compose error
        pytest.param(  # a typed-config error; the same path as the line above
            ["logger=none", "search_space.C=many"], "search_space.C", marks=pytest.mark.slow
        ),
    ],
)
def test_compose_errors_exit_with_the_bad_input_status(tmp_path, overrides, needle):
    proc = train(tmp_path, *overrides)
    assert proc.returncode == 2 and needle in proc.stderr


def test_bad_input_exits_2_before_a_wandb_run_is_created(tmp_path):
    proc = train(tmp_path, "logger=wandb", "stage=search", "+strategy.lrr=0.1")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: strategy.lrr=0.1 is not a config key")
    assert not (tmp_path / "wandb").exists()
