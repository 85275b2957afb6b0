"""``synflow``: Synaptic Flow (data-free).

Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic
flow" (NeurIPS 2020), as a NAS proxy in Abdelfattah et al., "Zero-Cost Proxies for Lightweight
NAS" (ICLR 2021). We follow Abdelfattah et al.'s ``synflow`` measure (their code:
SamsungLabs/zero-cost-nas, ``foresight/pruners/measures/synflow.py``):

- every floating tensor of the state (parameters and buffers) is replaced by its absolute value;
- batch norm is switched off: their ``synflow`` is registered with ``bn=False``, which makes every
  ``BatchNorm`` layer the identity (their ``synflow_bn`` variant keeps it; we do not);
- the network runs in double precision (their ``net.double()``), on one all-ones image of
  ``input_shape``; R is the sum of the logits;
- score = sum over the conv and linear weights θ of |θ ⊙ dR/dθ| (all terms are >= 0 here).

Double precision keeps R finite for the depths these spaces build (R grows like the product of
the layers' weight sums); a network whose R still overflows scores ``inf``. The network keeps the
absolute weights (the caller passes a copy); its dtype, modes and flags are restored.
Higher is better.
"""

from __future__ import annotations

import types

import torch
from torch import nn

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.common import kept_state, layer_weights, model_device_dtype, weight_grads


def _identity(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x


def synflow(inputs: ProxyInputs) -> float:
    model = inputs.model
    _, dtype = model_device_dtype(model, inputs)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with kept_state(model):
        model.double()
        try:
            with torch.no_grad():
                for tensor in model.state_dict().values():
                    if tensor.is_floating_point():
                        tensor.abs_()
            for m in norms:  # an instance attribute shadows the class's forward
                m.forward = types.MethodType(_identity, m)
            device, _ = model_device_dtype(model, inputs)
            ones = torch.ones(1, *inputs.input_shape, dtype=torch.float64, device=device)
            weights = layer_weights(model)
            grads = weight_grads(inputs.logits(ones).sum(), weights)
            score = sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads))
        finally:
            for m in norms:
                m.__dict__.pop("forward", None)
            model.to(dtype)
    return score


register_proxy(
    "synflow",
    synflow,
    data_free=True,
    paper="Tanaka et al., NeurIPS 2020; as in Abdelfattah et al., ICLR 2021 (synflow, bn=False)",
)
