"""``grad_norm``: the norm of the loss gradient.

Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021), ``grad_norm``: score =
sum over the conv and linear layers of the Euclidean (Frobenius) norm of dL/dW, L the training
loss on the data batch (``inputs.batches`` concatenated), batch norm on, the network in the mode
it is given (train). Per-layer norms summed, as their ``get_layer_metric_array`` then
``sum_arr`` do (not the norm of the whole gradient). Higher is better.
"""

from __future__ import annotations

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.common import data_batch, kept_state, layer_weights, loss_on, weight_grads


def grad_norm(inputs: ProxyInputs) -> float:
    images, labels = data_batch(inputs, "grad_norm")
    with kept_state(inputs.model):
        weights = layer_weights(inputs.model)
        grads = weight_grads(loss_on(inputs, images, labels), weights)
        return sum(float(g.norm()) for g in grads)


register_proxy(
    "grad_norm",
    grad_norm,
    data_free=False,
    paper="Abdelfattah et al., Zero-Cost Proxies for Lightweight NAS, ICLR 2021",
)
