"""SNAS: Gumbel-softmax soft relaxation (Xie, Zheng, Liu, Lin, "SNAS: Stochastic Neural
Architecture Search", ICLR 2019, sec. 2.2).

Per edge and forward pass the mixing weights are the concrete sample
Z = softmax((α + g)/τ) with Gumbel noise g (α are SNAS' log class probabilities); every op is
computed and α gets the pathwise gradient of the sample. The paper anneals τ from λ0 = 1
exponentially and does not state the rate; the default ends at 0.33 (as NAS-Bench-201-era
reimplementations do).
"""

from __future__ import annotations

import torch

from nas.strategies.samplers.base import Mixing, Sampler
from nas.strategies.samplers.temperature import TemperatureMixin


class GumbelSoftSampler(TemperatureMixin, Sampler):
    """Soft Gumbel-softmax weights, every op computed."""

    def __init__(self, tau_max: float = 1.0, tau_min: float = 0.33, schedule: str = "exponential"):
        self.tau_max, self.tau_min, self.schedule = tau_max, tau_min, schedule
        self.tau = tau_max

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        weights = {}
        for cell, a in alphas.items():
            gumbel = -torch.log(-torch.log(self._rand(a)))
            weights[cell] = torch.softmax((a + gumbel) / self.tau, dim=-1)
        return Mixing(weights)
