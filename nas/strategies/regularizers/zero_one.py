"""FairDARTS' zero-one loss (Chu, Zhou, Zhang, Li, "Fair DARTS: Eliminating Unfair Advantages in
Differentiable Architecture Search", ECCV 2020, sec. 3.3, eq. 6-7).

``L_01 = -(1/N) Σ_i (σ(α_i) - 0.5)²`` over all N architecture weights (every op of every edge
of every cell type), added to the arch objective with weight ``w_01 = 10``. Minimising it
pushes each σ(α) away from 0.5 towards 0 or 1, so the continuous supernet is closer to the
discrete network that the threshold rule keeps. Its gradient, ``-(2/N) (σ - 0.5) σ (1 - σ)``
per weight, vanishes at σ = 0.5 (α = 0): the cross-entropy has to break the symmetry first.

As the official code (xiaomi-automl/FairDARTS, ``fairdarts/separate_loss.py``
``ConvSeparateLoss``: ``-F.mse_loss(σ(α), 0.5)`` on the normal and reduction α concatenated,
weight ``--aux_loss_weight 10``; the mean runs over all of them at once). ``kind="l1"`` gives
the code's other variant (``TriSeparateLoss``: ``-mean |σ(α) - 0.5|``).
"""

from __future__ import annotations

import torch

from nas.core.arch import split_arch
from nas.strategies.protocols import Regularizer

KINDS = ("l2", "l1")


class ZeroOneLoss(Regularizer):
    """``weight · -(1/N) Σ (σ(α) - 0.5)²`` (``l2``; ``l1``: ``|σ(α) - 0.5|``) over every α.

    Args:
        weight: w_01, the loss' weight in the arch objective (10 in the paper and code).
        kind: ``l2`` (the paper's eq. 6, the code's default ``--sep_loss l2``) or ``l1``.
    """

    def __init__(self, weight: float = 10.0, kind: str = "l2"):
        if kind not in KINDS:
            raise ValueError(f"ZeroOneLoss kind must be one of {', '.join(KINDS)}, got {kind!r}.")
        self.weight, self.kind = weight, kind

    def __call__(self, arch: dict[str, torch.Tensor]) -> torch.Tensor:
        alphas, _ = split_arch(arch)
        # [N] all σ(α) of all cell types, as the code's torch.cat of normal and reduce.
        s = torch.cat([torch.sigmoid(a).reshape(-1) for a in alphas.values()])
        d = s - 0.5
        dist = d.square() if self.kind == "l2" else d.abs()
        return -self.weight * dist.mean()
