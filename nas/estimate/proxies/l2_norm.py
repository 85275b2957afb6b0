"""``l2_norm``: the size of the initial weights (data-free).

Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021), ``l2_norm``: score =
sum over the conv and linear layers of the Euclidean (Frobenius) norm of the weight tensor
(biases, batch norm and other parameters are not counted, as in their
``get_layer_metric_array``). Higher is better.
"""

from __future__ import annotations

import torch

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.common import layer_weights


def l2_norm(inputs: ProxyInputs) -> float:
    with torch.no_grad():
        return sum(float(w.norm()) for w in layer_weights(inputs.model))


register_proxy(
    "l2_norm",
    l2_norm,
    data_free=True,
    paper="Abdelfattah et al., Zero-Cost Proxies for Lightweight NAS, ICLR 2021",
)
