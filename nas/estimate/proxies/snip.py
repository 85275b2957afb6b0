"""``snip``: connection sensitivity.

Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity" (ICLR 2019), as a
NAS proxy in Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021): score = sum
over the conv and linear weights θ of |θ ⊙ dL/dθ|, L the training loss on the data batch
(``inputs.batches`` concatenated), batch norm on, the network in the mode it is given (train).
Abdelfattah et al.'s code takes dL/dm at a mask m = 1 multiplying each weight, which is
θ ⊙ dL/dθ; we take the product directly. Higher is better.
"""

from __future__ import annotations

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.common import data_batch, kept_state, layer_weights, loss_on, weight_grads


def snip(inputs: ProxyInputs) -> float:
    images, labels = data_batch(inputs, "snip")
    with kept_state(inputs.model):
        weights = layer_weights(inputs.model)
        grads = weight_grads(loss_on(inputs, images, labels), weights)
        return sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads))


register_proxy(
    "snip",
    snip,
    data_free=False,
    paper="Lee et al., SNIP, ICLR 2019; as in Abdelfattah et al., ICLR 2021",
)
