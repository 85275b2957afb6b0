"""The sampler interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class Mixing:
    """What the supernet mixes with.

    Attributes:
        weights: per cell type, ``[edges, ops]`` mixing weights (differentiable in α).
        active: optional, per cell type and edge, the op indices to compute (None = all).
    """

    weights: dict[str, torch.Tensor]
    active: dict[str, Sequence[Sequence[int] | None]] | None = None


class Sampler:
    """Turns α into mixing weights. Subclasses cite their paper."""

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Hook for schedules (e.g. Gumbel temperature)."""

    def probabilities(self, alphas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The per-edge op distribution that is logged and discretized (softmax by default)."""
        return {k: torch.softmax(a.detach().float(), dim=-1) for k, a in alphas.items()}
