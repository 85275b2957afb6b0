"""P-DARTS' search-space regularization: dropout on skip connections (Chen, Xie, Wu, Tian,
"Progressive Differentiable Architecture Search: Bridging the Depth Gap between Search and
Evaluation", ICCV 2019, sec. 3.3).

Parameter-free skip connections learn fastest and crowd out the other candidates; P-DARTS puts
a dropout after every ``skip_connect`` candidate of the supernet, at a rate that starts at the
stage's value and decays during the stage. The schedule is the official code's
(chenxin061/pdarts, ``train_search.py``): with ``E`` epochs per stage and ``W`` epochs of α
warm-up (``eps_no_archs = [10, 10, 10]``), the rate at epoch ``e`` of the stage is
``rate * (E - e - 1) / E`` while ``e < W``, then ``rate * exp(-(e - W) * 0.2)``. As in that code
(``model_search.py``, ``MixedOp``: ``isinstance(op, Identity)``) only the stride-1 skip (the
identity) is dropped, not the factorized reduction that stands for ``skip_connect`` on stride-2
edges. The dropout acts in training mode only (arch and weight steps), never in evaluation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nas.strategies.protocols import Modifier, SearchState
from supernet.mixed import MixedOp
from supernet.ops import Identity

SKIP = "skip_connect"


class DroppedSkip(nn.Module):
    """``dropout(skip(x), p)`` in training mode; ``skip(x)`` in eval mode. No parameters, so
    the supernet's state dict is the same with or without it."""

    def __init__(self, skip: nn.Module, p: float = 0.0):
        super().__init__()
        self.skip = skip
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(x)
        if not self.training or self.p <= 0.0:
            return y
        return F.dropout(y, self.p, training=True)


def skip_dropout_rate(rate: float, epoch: int, epochs: int, warmup: int, decay: float) -> float:
    """The official schedule: linear decay over the stage during the α warm-up, then
    exponential decay from the end of the warm-up."""
    if epoch < warmup:
        return rate * (epochs - epoch - 1) / epochs
    return rate * math.exp(-(epoch - warmup) * decay)


def install_skip_dropout(supernet: nn.Module) -> list[DroppedSkip]:
    """Wraps every stride-1 ``skip_connect`` candidate of ``supernet`` in a ``DroppedSkip``
    (once; idempotent) and returns all the wrappers."""
    wrappers = []
    for m in supernet.modules():
        if not isinstance(m, MixedOp):
            continue
        for k, name in enumerate(m.op_names):
            cand = m.candidates[k]
            if name == SKIP and isinstance(cand, Identity):
                cand = m.candidates[k] = DroppedSkip(cand).train(m.training)
            if isinstance(cand, DroppedSkip):
                wrappers.append(cand)
    return wrappers


class SkipDropout(Modifier):
    """Dropout on the supernet's skip connections, rate decayed within each stage.

    Args:
        rate: the initial rate (P-DARTS, CIFAR-10: 0.1, 0.4, 0.7 in stages 1-3; a staged search
            sets each stage's value from ``strategy.stages[i].skip_dropout``).
        decay: the exponential decay factor per epoch after the α warm-up (official: 0.2).
        warmup: epochs of α warm-up of the schedule; None = the search module's
            ``arch_start_epoch`` (counted within the stage: each stage is its own fit).
    """

    def __init__(self, rate: float = 0.0, decay: float = 0.2, warmup: int | None = None):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"SkipDropout rate must be in [0, 1), got {rate}.")
        self.rate, self.decay, self.warmup = float(rate), float(decay), warmup
        self.p = self.rate

    def set_stage(self, index: int, stage) -> None:
        """A staged search's stage ``index`` begins (``nas.run.progressive_depth``)."""
        rate = float(stage.skip_dropout)
        if not 0.0 <= rate < 1.0:
            raise ValueError(
                f"strategy.stages[{index}].skip_dropout must be in [0, 1), got {rate}."
            )
        self.rate = self.p = rate

    def on_epoch_start(self, epoch: int, max_epochs: int, state: SearchState) -> None:
        warmup = self.warmup if self.warmup is not None else state.arch_start_epoch
        self.p = skip_dropout_rate(self.rate, epoch, max(1, max_epochs), warmup, self.decay)
        for wrapper in install_skip_dropout(state.supernet):
            wrapper.p = self.p

    def state_dict(self) -> dict:
        return {"rate": self.rate, "p": self.p}

    def load_state_dict(self, state: dict) -> None:
        self.rate = state.get("rate", self.rate)
        self.p = state.get("p", self.p)

    def restore(self, state: SearchState) -> None:
        for wrapper in install_skip_dropout(state.supernet):
            wrapper.p = self.p
