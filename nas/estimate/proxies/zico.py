"""``zico``: the inverse coefficient of variation of gradients.

Li et al., "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients" (ICLR 2023),
following the paper's Eq. and their official code (SLDGroup/ZiCo,
``ZeroShotProxy/compute_zico.py``): the gradients g_b = dL_b/dθ of the training loss of B
batches (the network in the mode it is given: train), and per conv or linear layer l

    ZiCo = Σ_l log( Σ_{θ in l, σ_θ ≠ 0} E_b|g_θ| / σ_θ ),

E_b and σ_θ (the population standard deviation, ``numpy.std``) taken across the B gradients; a
layer whose sum is 0 (no weight with σ ≠ 0) is left out, as their code leaves it out. The log is
of the per-layer sum, not a sum of per-weight logs.

Batches: each batch of ``inputs.batches`` is one gradient sample (their code: one per loader
batch); with a single batch it is split into two halves (the first N // 2 samples and the rest),
as the port of ZiCo in MeCo's repository (HamsterMimi/MeCo, ``measures/zico.py``) does. Fewer
than two samples in all is refused. Statistics in double precision (theirs: the gradients' own
dtype). Higher is better.
"""

from __future__ import annotations

import math

import torch

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.common import (
    kept_state,
    layer_weights,
    loss_on,
    no_batches_message,
    weight_grads,
)


def gradient_batches(inputs: ProxyInputs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches whose gradients ZiCo compares: the given ones, or one split in two."""
    if not inputs.batches:
        raise ValueError(no_batches_message("zico"))
    if len(inputs.batches) >= 2:
        return list(inputs.batches)
    x, y = inputs.batches[0]
    n = x.shape[0]
    if n < 2:
        raise ValueError(
            "Zero-cost proxy 'zico' compares gradients of at least two batches: it got one batch "
            "of one sample (raise estimate.batches or the batch size)."
        )
    return [(x[: n // 2], y[: n // 2]), (x[n // 2 :], y[n // 2 :])]


def zico_of_gradients(per_layer: list[torch.Tensor]) -> float:
    """ZiCo of the gradients ``per_layer[l]`` (B x weights of layer l)."""
    total = 0.0
    for g in per_layer:
        g = g.to(torch.float64)
        std = g.std(0, unbiased=False)
        keep = std != 0
        ratio_sum = float((g.abs().mean(0)[keep] / std[keep]).sum())
        if ratio_sum != 0:
            total += math.log(ratio_sum) if ratio_sum > 0 else math.nan
    return total


def zico(inputs: ProxyInputs) -> float:
    batches = gradient_batches(inputs)
    with kept_state(inputs.model):
        weights = layer_weights(inputs.model)
        grads: list[list[torch.Tensor]] = [[] for _ in weights]
        for x, y in batches:
            for layer, g in zip(grads, weight_grads(loss_on(inputs, x, y), weights)):
                layer.append(g.detach().flatten())
    return zico_of_gradients([torch.stack(layer) for layer in grads])


register_proxy(
    "zico",
    zico,
    data_free=False,
    paper="Li et al., ZiCo: Zero-shot NAS via Inverse Coefficient of Variation, ICLR 2023",
)
