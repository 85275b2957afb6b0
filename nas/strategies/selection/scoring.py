"""Scoring a discrete architecture with the supernet's shared weights on validation batches.

The supernet runs with its BN layers in training mode (batch statistics) under ``no_grad``, and
their running buffers are restored afterwards: single-path methods evaluate each candidate with
statistics of its own path (SPOS recalibrates BN per candidate for the same reason).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nas.strategies.samplers.uniform import Arch, arch_mixing

Batch = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def score_arch(supernet: nn.Module, arch: Arch, batches: Sequence[Batch], n_ops: int) -> float:
    """Mean accuracy of ``arch`` over ``batches``, with the supernet's shared weights."""
    was_training = supernet.training
    bns = [m for m in supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [
        {k: v.clone() for k, v in m.state_dict().items()} for m in bns if m.track_running_stats
    ]
    tracked = [m for m in bns if m.track_running_stats]
    supernet.train()
    try:
        mix = None
        correct, total = 0, 0
        for x, y in batches:
            if mix is None:
                mix = arch_mixing(arch, n_ops, like=x.new_zeros(()))
            logits = supernet(x, mix.weights, mix.active)
            correct += int((logits.argmax(-1) == y).sum())
            total += y.shape[0]
    finally:
        for m, state in zip(tracked, saved):
            m.load_state_dict(state)
        supernet.train(was_training)
    return correct / max(total, 1)
