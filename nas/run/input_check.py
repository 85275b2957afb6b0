"""The inputs of a run, checked before any data is read or any logger (a W&B run) is created.

``check_inputs`` builds or validates what can fail cheaply: unknown keys, epochs, the search
space and its options, the data settings, the strategy's components. A bad input then fails
with one paragraph (``train.py``: exit status 2) and leaves nothing behind: no dataset
download, no offline W&B run. The search space it builds is the run's (the stages take it);
the other objects the stages build again: these checks only make them fail first.
"""

from __future__ import annotations

from omegaconf import DictConfig

from nas.data.config import validate_data_config
from nas.estimate import build_estimator
from nas.retrain import export
from nas.run import builders
from nas.run.progressive_depth import check_stages
from nas.run.schema import check_known_keys
from nas.run.settings import data_settings, export_settings
from supernet.spaces.base import SearchSpace

SEARCH_STAGES = ("search", "pipeline")
RETRAIN_STAGES = ("retrain", "pipeline")


def check_inputs(cfg: DictConfig) -> SearchSpace:
    """Raises ValueError (naming the full key, the value and the valid choices) on a bad input;
    returns the run's search space."""
    stage = cfg.stage.value
    check_known_keys(cfg)
    check_epochs(cfg, stage)
    space = builders.space_from_config(cfg)
    if stage in SEARCH_STAGES:
        check_stages(cfg)
    if stage in (*SEARCH_STAGES, "discretize"):
        builders.strategy_from_config(cfg)
    if stage in SEARCH_STAGES and cfg.selection.name == "pt":
        from nas.run.pt_stage import check_settings

        check_settings(cfg)  # selection.score: val_acc or a zero-cost proxy
    if stage in RETRAIN_STAGES:
        export.check_config(export_settings(cfg))
        builders.check_child_network(cfg, space)
        if cfg.retrain.get("inherit") and not space.extracts_children:
            space.child_from_supernet(None, None)  # the space's error, before the search runs
    if stage == "estimate":
        from nas.run.estimate_stage import check_settings

        check_settings(cfg, space)
        builders.check_child_network(cfg, space)
    validate_data_config(data_settings(cfg))  # the data modules check it again when built
    for name in cfg.estimators:
        build_estimator(name)  # an unknown name fails here, naming the registered ones
    return space


def check_epochs(cfg: DictConfig, stage: str) -> None:
    """Epoch counts of the stages this run trains. Lightning reads ``max_epochs=-1`` as
    "train forever", so a non-positive count is refused rather than passed on."""
    if stage in SEARCH_STAGES:
        at_least("trainer.max_epochs", cfg.trainer.max_epochs, 1, "the search's epochs")
        s = cfg.strategy
        at_least("strategy.arch_start_epoch", s.arch_start_epoch, 0, "weight-only epochs first")
        at_least("strategy.lr_warmup_epochs", s.lr_warmup_epochs, 0, "warm-up epochs; 0 = off")
    if stage in RETRAIN_STAGES:
        inherit = bool(cfg.retrain.get("inherit"))
        at_least("retrain.epochs", cfg.retrain.epochs, 0 if inherit else 1,
                 "the child network's training epochs" + ("; 0 = evaluate the inherited weights"
                                                          if inherit else ""))  # fmt: skip
    if stage in (*SEARCH_STAGES, *RETRAIN_STAGES):
        every = cfg.checkpoint
        at_least("checkpoint.every_n_steps", every.every_n_steps, 0, "training batches; 0 = off")
        at_least("checkpoint.every_minutes", every.every_minutes, 0, "minutes; 0 = off")


def at_least(key: str, value: float, low: int, meaning: str) -> None:
    if value < low:
        hint = " (Lightning would read -1 as 'train forever')" if low == 1 else ""
        raise ValueError(f"{key}={value} must be >= {low}: {meaning}{hint}.")
