"""GDAS: Gumbel-softmax hard sampling with the straight-through estimator (Dong & Yang,
"Searching for A Robust Neural Architecture in Four GPU Hours", CVPR 2019, sec. 3.2).

Per edge and forward pass: h = argmax_k (log softmax(α)_k + g_k) with Gumbel noise g; the
mixing weights are the straight-through one-hot ``onehot(h) − p.detach() + p`` with
p = softmax((log softmax(α) + g)/τ), so the forward pass equals the sampled op alone while α
gets the gradient of the relaxed sample. Only the sampled op is computed (``Mixing.active``).
τ anneals linearly from 10 to 0.1 over the search.
"""

from __future__ import annotations

import torch

from nas.strategies.samplers.base import Mixing, Sampler
from nas.strategies.samplers.temperature import TemperatureMixin


class GumbelHardSampler(TemperatureMixin, Sampler):
    """One op per edge, sampled; weights carry the straight-through gradient to α."""

    samples_paths = True

    def __init__(self, tau_max: float = 10.0, tau_min: float = 0.1, schedule: str = "linear"):
        self.tau_max, self.tau_min, self.schedule = tau_max, tau_min, schedule
        self.tau = tau_max

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        weights, indices = {}, []
        for cell, a in alphas.items():
            gumbel = -torch.log(-torch.log(self._rand(a)))
            logits = (torch.log_softmax(a, dim=-1) + gumbel) / self.tau
            probs = torch.softmax(logits, dim=-1)
            index = probs.detach().argmax(dim=-1, keepdim=True)  # [edges, 1]
            one_hot = torch.zeros_like(probs).scatter_(-1, index, 1.0)
            weights[cell] = one_hot - probs.detach() + probs
            indices.append(index.squeeze(-1))
        # The ops to compute must be known on the host: one read for every cell type at once.
        chosen = torch.cat(indices).tolist()
        active, start = {}, 0
        for cell, index in zip(alphas, indices, strict=True):
            active[cell] = [[k] for k in chosen[start : start + len(index)]]
            start += len(index)
        return Mixing(weights, active)
