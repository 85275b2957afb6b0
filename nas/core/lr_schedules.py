"""The search's weight learning-rate schedules, as ``LambdaLR`` factors per epoch.

The default is one cosine over the search (``CosineAnnealingLR``, DARTS). ProxylessNAS
(Cai et al., ICLR 2019; mit-han-lab/proxylessnas ``search/nas_manager.py``, ``warm_up``) first
trains the weights alone for a number of epochs with a cosine of their own, from a higher
peak (0.05) to 0, then restarts: a cosine from the optimizer's lr over the remaining epochs.
"""

from __future__ import annotations

import math


class WarmupThenCosine:
    """``LambdaLR`` factor: epochs ``[0, warmup)`` follow ``0.5 · peak · (1 + cos(π e / warmup))``,
    then ``lr_min + (lr - lr_min) · 0.5 · (1 + cos(π (e - warmup) / (epochs - warmup)))``,
    both as a multiple of the optimizer's ``lr``. A class (not a closure) so the scheduler's
    state dict, and so an exact resume, holds it."""

    def __init__(self, lr: float, epochs: int, warmup: int, peak: float, lr_min: float):
        if not 0 < warmup < epochs:
            raise ValueError(
                f"strategy.lr_warmup_epochs={warmup} must be between 1 and the search's epochs "
                f"minus 1 ({epochs - 1}): the warm-up cosine is followed by the search's own."
            )
        if lr <= 0 or peak <= 0:
            raise ValueError(
                f"strategy.lr_warmup_peak={peak} and the weight lr={lr} must be positive."
            )
        self.lr, self.epochs, self.warmup, self.peak, self.lr_min = lr, epochs, warmup, peak, lr_min

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup:
            return 0.5 * self.peak * (1 + math.cos(math.pi * epoch / self.warmup)) / self.lr
        t = (epoch - self.warmup) / max(1, self.epochs - self.warmup)
        lr = self.lr_min + (self.lr - self.lr_min) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        return lr / self.lr
