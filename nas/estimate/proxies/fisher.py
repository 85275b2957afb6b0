"""``fisher``: the Fisher-information saliency of channels.

Theis et al., "Faster gaze prediction with dense networks and Fisher pruning" (2018), as used by
Turner et al., "BlockSwap: Fisher-guided Block Substitution for Network Compression on a Budget"
(ICLR 2020), and as a NAS proxy in Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS"
(ICLR 2021). For every activation a (N x C x ...) and its loss gradient dL/da on the data batch
(``inputs.batches`` concatenated, batch norm on, the network in the mode it is given):

    Δ_c = 0.5 · mean_n ( Σ_spatial a_nc · dL/da_nc )²,   score = Σ over activations and c of Δ_c.

Which activations: as Abdelfattah et al.'s code, the output of every ``nn.Conv2d`` and
``nn.Linear`` (subclasses included; a layer called twice gives two activations), taken with a
forward hook; the gradients come from ``torch.autograd.grad`` on those outputs (an output the
loss does not reach, an auxiliary head's, gives Δ = 0).

Where definitions differ: Abdelfattah et al.'s code broadcasts each channel's Δ_c to every weight
of that output channel and then sums all weights, so their total weighs Δ_c by the channel's
fan-in (in_channels / groups · kernel area). We sum Δ_c once per channel, the channel saliency
of Theis et al. and Turner et al. Higher is better.
"""

from __future__ import annotations

import torch

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.common import data_batch, hooked, kept_state, loss_on, weighted_layers


def fisher(inputs: ProxyInputs) -> float:
    images, labels = data_batch(inputs, "fisher")
    model = inputs.model
    acts: list[torch.Tensor] = []
    with kept_state(model):
        handles = [
            m.register_forward_hook(lambda m, args, out: acts.append(out))
            for m in weighted_layers(model)
        ]
        with hooked(handles):
            loss = loss_on(inputs, images, labels)
        used = [a for a in acts if a.requires_grad]
        grads = torch.autograd.grad(loss, used, allow_unused=True)
        total = 0.0
        for a, g in zip(used, grads):
            if g is None:
                continue
            prod = a.detach() * g
            per_channel = prod.sum(dim=tuple(range(2, prod.dim()))) if prod.dim() > 2 else prod
            total += float(0.5 * per_channel.pow(2).mean(0).sum())
        return total


register_proxy(
    "fisher",
    fisher,
    data_free=False,
    paper="Theis et al. 2018 / Turner et al., ICLR 2020; as in Abdelfattah et al., ICLR 2021",
)
