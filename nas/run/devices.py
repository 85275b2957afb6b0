"""Where a run computes and in which memory format: read by the builders (networks, data) and
by the console's banner alike, so neither imports the other."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from nas.data.datasets import is_token_dataset


def runs_on_cpu(cfg: DictConfig) -> bool:
    """Whether Lightning will put this run on the CPU (``trainer.accelerator``; ``auto`` picks a
    GPU when one is present)."""
    accelerator = str(cfg.trainer.accelerator)
    if accelerator == "auto":
        return not (torch.cuda.is_available() or torch.backends.mps.is_available())
    return accelerator == "cpu"


def channels_last(cfg: DictConfig) -> bool:
    """``channels_last``: true, false, or auto (true where the run is on the CPU: oneDNN's NHWC
    convolutions made a first-order search step 1.46x faster and a second-order one 1.48x on
    2 cores; false on a GPU, where NHWC measured 8-15% slower, experiments/bench/README.md).
    Always false for token data (``data=text``): its inputs are [B, T] token ids, no images."""
    value = cfg.channels_last
    if value == "auto":
        return runs_on_cpu(cfg) and not is_token_dataset(cfg.data.name)
    if isinstance(value, bool):
        return value and not is_token_dataset(cfg.data.name)
    raise ValueError(
        f"Unknown channels_last={value!r}. Valid choices are: true, false, auto (NHWC on the "
        "CPU, NCHW on a GPU)."
    )
