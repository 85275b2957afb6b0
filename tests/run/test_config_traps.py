"""No silent config traps: naming a dataset and a recipe gives the paper's network.

The command lines are the README's: their child networks' parameter counts and multiply-adds
are checked against the published figures (the reference implementation's exact counts where
one exists; the papers round to 0.1M), and a contradiction between an experiment and the
command line stops the run naming both values.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from nas.run import builders, stages
from nas.run.experiment_check import contradictions, fixed_groups
from nas.run.settings import child_size
from tests.helpers.config import compose_cfg
from tests.helpers.paths import CONF
from tests.helpers.runs import run_train

NB201_LARGEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def profile(overrides: list[str]) -> dict:
    cfg = compose_cfg(["stage=profile", *overrides])
    space = builders.space_from_config(cfg)
    return stages.profile_fields(cfg, space, stages.load_genotype_arg(cfg, space))


# (command line, exact params without the auxiliary head, published params in M, MACs or None)
PAPER_NETWORKS = [
    # DARTS V2 (Liu et al. 2019, Table 1: 3.3M), the reference implementation's 3,349,342.
    (["genotype=darts_v2", "retrain=darts_cifar", "data=cifar10"], 3_349_342, 3.3, 528_359_040),
    (["genotype=darts_v2", "data=cifar10"], 3_349_342, 3.3, 528_359_040),
    (["genotype=darts_v1", "data=cifar10"], 3_169_414, 3.2, None),
    # PC-DARTS (Xu et al. 2020, Table 1: 3.6M).
    (["genotype=pc_darts_cifar", "data=cifar10"], 3_634_678, 3.6, None),
    # P-DARTS (Chen et al. 2019, Table 1: 3.4M).
    (["genotype=pdarts", "data=cifar10"], 3_433_798, 3.4, None),
    # DARTS V2 in the ImageNet mobile setting (Table 3: 4.7M params, 574M multiply-adds with the
    # auxiliary tower's share excluded differently; ours counts the 224x224 forward pass).
    (["genotype=darts_v2", "data=imagenet", "retrain=darts_imagenet"], 4_718_752, 4.7, None),
    # NAS-Bench-201's largest cell on CIFAR-10: the benchmark's C=16, N=5 network (1.53M).
    (["search_space=nb201", "data=cifar10", f"genotype='{NB201_LARGEST}'"], 1_531_546, 1.5, None),
]


@pytest.mark.parametrize(
    "overrides, params, published_m, macs", PAPER_NETWORKS, ids=lambda v: str(v)[:60]
)
def test_named_data_and_recipe_give_the_paper_network(overrides, params, published_m, macs):
    fields = profile(overrides)
    assert fields["params"] == params
    assert round(fields["params"] / 1e6, 1) == published_m
    if macs is not None:
        assert fields["macs"] == macs
    # The default job's own sizes must not leak in: same network with every experiment removed.
    assert profile([*overrides, "~experiment"])["params"] == params


def test_nb201_child_takes_its_shape_from_the_space():
    cfg = compose_cfg(["search_space=nb201", "data=cifar10"])
    assert cfg.retrain.name == "nb201" and cfg.retrain.C is None and cfg.retrain.layers is None
    assert child_size(cfg) == (16, 5)
    # A different N in the space is the benchmark's family member of that size, not 20 cells.
    assert child_size(compose_cfg(["search_space=nb201", "search_space.layers=3"])) == (16, 3)
    r = cfg.retrain
    assert (r.epochs, r.batch_size, r.auxiliary, r.drop_path, r.cutout) == (200, 256, False, 0, 0)
    assert r.optimizer.nesterov and r.optimizer.lr == 0.1


def test_default_job_shrinks_only_its_own_data():
    default = compose_cfg([])
    assert (default.search_space.C, default.search_space.layers) == (8, 5)
    assert (default.retrain.C, default.retrain.layers, default.retrain.epochs) == (16, 6, 20)
    assert default.trainer.max_epochs == 8
    named = compose_cfg(["experiment=quickstart"])
    assert named == default
    cifar = compose_cfg(["data=cifar10"])
    assert (cifar.search_space.C, cifar.search_space.layers, cifar.trainer.max_epochs) == (
        16,
        8,
        50,
    )
    assert (cifar.retrain.C, cifar.retrain.layers, cifar.retrain.epochs) == (36, 20, 600)
    # Naming the retrain recipe on digits trains the paper's child network.
    named_recipe = compose_cfg(["retrain=darts_cifar"])
    assert (named_recipe.retrain.C, named_recipe.retrain.layers) == (36, 20)


def test_cifar_network_on_imagenet_images_is_refused():
    cfg = compose_cfg(["stage=profile", "genotype=darts_v2", "data=imagenet"])
    space = builders.space_from_config(cfg)
    with pytest.raises(ValueError) as err:
        stages.profile_fields(cfg, space, stages.load_genotype_arg(cfg, space))
    msg = str(err.value)
    assert "data=imagenet" in msg and "224x224" in msg and "retrain=darts_imagenet" in msg


def test_experiment_fixed_groups_follow_includes():
    assert fixed_groups(CONF, "darts_v2_cifar10") == {
        "data": "cifar10",
        "strategy": "darts_2nd",
        "search_space": "darts",
        "retrain": "darts_cifar",
    }
    # nb201_gdas extends nb201_base and overrides the strategy.
    fixed = fixed_groups(CONF, "nb201_gdas")
    assert fixed["search_space"] == "nb201" and fixed["strategy"] == "gdas"
    assert fixed["retrain"] == "nb201" and fixed["data"] == "cifar10"
    assert fixed_groups(CONF, "smoke") == {}
    choices = {"experiment": "nb201_gdas", "search_space": "darts", "strategy": "gdas"}
    (bad,) = contradictions(CONF, choices)
    assert "search_space=darts" in bad and "search_space=nb201" in bad


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_agrees_with_itself(experiment):
    cfg_choices = compose_choices([f"experiment={experiment}"])
    assert contradictions(CONF, cfg_choices) == []


def compose_choices(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    return dict(cfg.hydra.runtime.choices)


def test_contradicting_an_experiment_stops_the_run(tmp_path, monkeypatch, capsys):
    code = run_train(
        monkeypatch,
        tmp_path,
        "experiment=nb201_darts",
        "search_space=darts",
        "stage=profile",
        "genotype=darts_v2",
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "experiment=nb201_darts" in err
    assert "search_space=darts" in err and "search_space=nb201" in err
