"""Every config group option composes; typos and bad values fail at compose time."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from nas.run.input_check import check_inputs
from tests.helpers.config import compose_cfg, options

GROUPS = ["search_space", "strategy", "data", "trainer", "logger", "retrain", "experiment"]


@pytest.mark.parametrize(
    "override", [f"{g}={o}" for g in GROUPS for o in options(g)], ids=lambda s: s
)
def test_every_group_option_composes(override):
    # A recipe for one space's child network is composed with that space.
    partner = {
        "retrain=module": ["search_space=module"],
        "retrain=vit": ["search_space=vit"],
        "retrain=gpt": ["search_space=gpt", "data=text"],
        "search_space=gpt": ["data=text"],  # a language model reads token ids
    }
    cfg = compose_cfg([override, *partner.get(override, [])])
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    group, option = override.split("=")
    # retrain=<space name> is that space's default recipe (retrain=darts is darts_cifar).
    aliases = {("retrain", "darts"): "darts_cifar"}
    if group not in ("experiment", "trainer"):
        assert cfg[group].name == aliases.get((group, option), option)
    if group in ("experiment", "search_space", "strategy", "retrain"):
        check_inputs(cfg)  # and it passes the run's input check (nas/run/input_check.py)


def smoke_choices() -> list:
    """Every (space, strategy, data) triple; by default every (space, strategy) pair with the
    data option turning round (each data option with each space, each strategy with several
    data), the full product under -m slow (399 composes, 53 s)."""
    data = options("data")
    triples = []
    for i, (space, strategy) in enumerate(
        (sp, st) for sp in options("search_space") for st in options("strategy")
    ):
        for j, d in enumerate(data):
            slow = j != i % len(data)
            triples.append(pytest.param(space, strategy, d, marks=[pytest.mark.slow] * slow))
    return triples


@pytest.mark.parametrize("space, strategy, data", smoke_choices())
def test_smoke_composes_with_every_choice(space, strategy, data):
    cfg = compose_cfg(
        ["experiment=smoke", f"search_space={space}", f"strategy={strategy}", f"data={data}"]
    )
    assert (
        cfg.search_space.name == space and cfg.strategy.name == strategy and cfg.data.name == data
    )
    assert cfg.trainer.max_epochs == 1 and cfg.retrain.epochs == 1


def test_default_is_the_quickstart_pipeline():
    cfg = compose_cfg([])
    assert cfg.stage.value == "pipeline"
    assert cfg.data.name == "digits" and cfg.strategy.name == "darts" and cfg.logger.name == "wandb"
    assert cfg.logger.mode == "offline"


def test_paper_hyperparameters():
    # The groups hold the papers' values; experiments and the digits scale state differences.
    cfg = compose_cfg(["data=cifar10"])
    s = compose_cfg(["~experiment", "strategy=darts_2nd"]).strategy
    assert s.arch_grad._target_.endswith("SecondOrder") and s.arch_grad.r == 0.01
    assert s.weight_optimizer.lr == 0.025 and s.weight_optimizer.momentum == 0.9
    assert s.weight_optimizer.weight_decay == 3e-4 and s.weight_lr_min == 0.001 and s.grad_clip == 5
    assert s.arch_optimizer.lr == 3e-4 and list(s.arch_optimizer.betas) == [0.5, 0.999]
    assert s.arch_optimizer.weight_decay == 1e-3 and s.alpha_init_std == 1e-3
    r = cfg.retrain
    assert (r.C, r.layers) == (36, 20)
    assert (r.epochs, r.batch_size, r.drop_path, r.cutout, r.auxiliary_weight, r.grad_clip) == (
        600,
        96,
        0.2,
        16,
        0.4,
        5,
    )
    assert r.optimizer.lr == 0.025 and r.optimizer.weight_decay == 3e-4
    ss = cfg.search_space
    assert len(ss.ops) == 8 and ss.ops[0] == "none" and (ss.C, ss.layers) == (16, 8)
    assert cfg.data.train_portion == 0.5


@pytest.mark.parametrize(
    "override, key",
    [
        ("strategy.weight_lr_mni=0.1", "weight_lr_mni"),
        ("trainer.max_epoch=3", "max_epoch"),
        ("search_space.channels=3", "channels"),
        ("retrain.epoch=3", "epoch"),
        ("trainer.max_epochs=many", "max_epochs"),
        ("stage=serach", "stage"),
    ],
)
def test_typos_fail_at_compose_time_naming_the_key(override, key):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg([override])
    assert key in str(err.value) + str(err.value.__cause__)


def test_unknown_group_option_lists_choices():
    with pytest.raises(Exception) as err:
        compose_cfg(["strategy=dartz"])
    assert "darts_2nd" in str(err.value)
