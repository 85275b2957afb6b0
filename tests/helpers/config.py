"""Composed configs: the one way tests build a Hydra config without running ``train.py``."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from nas.run.schema import register_configs
from tests.helpers.paths import CONF

# The typed schema validates every composed config, so it is registered before any compose.
register_configs()


def options(group: str) -> list[str]:
    """The options of a config group: the stems of ``conf/<group>/*.yaml``, sorted."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_cfg(overrides: list[str]):
    """``conf/config.yaml`` composed with ``overrides``, as ``train.py`` would (unresolved)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def compose_recipe(name: str):
    """``experiment=<name>`` composed as ``train.py`` composes it, every interpolation resolved."""
    import train

    GlobalHydra.instance().clear()
    with initialize_config_dir(train.CONFIG_DIR, version_base="1.3", job_name="train"):
        cfg = compose("config", overrides=[f"experiment={name}"])
    OmegaConf.resolve(cfg)
    return cfg


def ddp_config(*extra: str):
    """A smoke config on digits under DDP: 2 spawned CPU processes (gloo), 3 steps."""
    return compose_cfg([
        "experiment=smoke", "data=digits", "logger=none", "trainer=ddp", "trainer.strategy=ddp_spawn",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=0", "seed=5", *extra,
    ])  # fmt: skip
