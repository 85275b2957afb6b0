"""Softmax relaxation over each edge's ops (Liu et al., DARTS, ICLR 2019, eq. 2)."""

from __future__ import annotations

import torch

from nas.strategies.samplers.base import Mixing, Sampler


class SoftmaxSampler(Sampler):
    """Mixing weights ``softmax(α)`` per edge; every op is computed."""

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        return Mixing({k: torch.softmax(a, dim=-1) for k, a in alphas.items()})
