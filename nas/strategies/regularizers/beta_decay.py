"""β-DARTS' Beta-Decay regularization (Ye, Li, Li, Chen, Fan, Ouyang, "β-DARTS: Beta-Decay
Regularization for Differentiable Architecture Search", CVPR 2022, sec. 3).

``L_β = (1/E) Σ_e log Σ_k exp(α_ek)``: the mean over edges of each edge's logsumexp of α,
added to the arch objective with a weight λ that grows linearly over the search. Its gradient
is ``λ · softmax(α_e) / E`` per edge row: every α is pushed down in proportion to its softmax
weight, which keeps the softmax-activated weights β = softmax(α) from growing too large and
too unequal ("beta decay"): the largest α is pulled down most, so the rows are drawn towards
a uniform softmax without being reordered.

As the official code (Sunshine-Ye/Beta-DARTS, ``optimizers/darts/architect.py``: ``mlc_loss``
= ``torch.mean(torch.logsumexp(α, dim=-1))`` added in ``_backward_step`` with
``weights = 0 + 50*epoch/100``), i.e. λ = λ_max · epoch / T with λ_max = 50 and T = 100, the
epochs of its NAS-Bench-201 search (``nasbench201/train_search.py --epochs 100``), whose one α
tensor ``[6, 5]`` the mean runs over. With two cell types (the DARTS space) the mean runs over
the edges of both (28 rows), as one concatenated α.
"""

from __future__ import annotations

from typing import Any

import torch

from nas.core.arch import split_arch
from nas.strategies.protocols import Regularizer


class BetaDecay(Regularizer):
    """``λ(epoch) · mean_e logsumexp(α_e)`` over every edge of every cell type.

    Args:
        max_scale: λ_max (50 in the official code).
        ramp_epochs: T, the epochs over which λ rises linearly from 0 to λ_max
            (λ = λ_max · min(epoch, T) / T); None = the search's ``max_epochs``. The code
            hard-codes T = 100.
        scale: a constant λ instead of the ramp (None = the ramp).
    """

    def __init__(
        self, max_scale: float = 50.0, ramp_epochs: int | None = 100, scale: float | None = None
    ):
        if ramp_epochs is not None and ramp_epochs <= 0:
            raise ValueError(f"BetaDecay ramp_epochs must be positive or null, got {ramp_epochs}.")
        self.max_scale, self.ramp_epochs, self.fixed_scale = max_scale, ramp_epochs, scale
        self.epoch, self.max_epochs = 0, 1

    @property
    def scale(self) -> float:
        """λ of the current epoch."""
        if self.fixed_scale is not None:
            return float(self.fixed_scale)
        ramp = self.ramp_epochs if self.ramp_epochs is not None else max(1, self.max_epochs)
        return self.max_scale * min(self.epoch, ramp) / ramp

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        self.epoch, self.max_epochs = epoch, max_epochs

    def __call__(self, arch: dict[str, torch.Tensor]) -> torch.Tensor:
        alphas, _ = split_arch(arch)
        # [E] one logsumexp per edge row, all cell types together.
        lse = torch.cat([torch.logsumexp(a, dim=-1).reshape(-1) for a in alphas.values()])
        return self.scale * lse.mean()

    # λ follows from the epoch, which on_epoch_start sets again on resume; it is saved anyway so
    # that a restored strategy has its λ before the first hook runs.
    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "max_epochs": self.max_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state.get("epoch", self.epoch))
        self.max_epochs = int(state.get("max_epochs", self.max_epochs))
