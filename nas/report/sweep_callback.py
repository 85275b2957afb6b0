"""Collects a multirun when its last job ends: ``python train.py -m ...`` leaves the sweep's
results table, figures and Pareto front (and, when its jobs logged to W&B, a ``collect`` W&B
run) in its sweep directory, as ``python -m nas.report.collect <sweep dir>`` would.

A Hydra callback (``hydra.callbacks.collect`` in ``conf/config.yaml``), configured by the
run's ``collect.*``; it runs in the process that launched the jobs (with any launcher). A
sweep that cannot be collected (every job failed) gets a one-line note, never an exception
after the jobs' work is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from nas.core.log import get_logger

log = get_logger(__name__)


class CollectSweep(Callback):
    """``on_multirun_end``: ``nas.report.collect.collect`` on ``hydra.sweep.dir``."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # A bad collect.* setting fails before the jobs run, not after hours of them.
        settings = config.get("collect")
        if settings is not None and settings.enabled:
            from nas.report.collect import check_settings

            check_settings(settings.metric, settings.cost, settings.wandb)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        settings = config.get("collect")
        if settings is None or not settings.enabled:
            return
        from nas.report.collect import CollectError, collect

        root = Path(str(config.hydra.sweep.dir))
        log.info(f"collecting the sweep {root} (collect.enabled=false to skip)")
        try:
            collect(root, None, settings.metric, settings.cost, settings.wandb)
        except CollectError as err:
            log.warning(f"the sweep was not collected: {err}")
