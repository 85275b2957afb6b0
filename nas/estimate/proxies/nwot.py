"""``nwot``: NASWOT, the log-determinant of the activation-pattern kernel.

Mellor et al., "Neural Architecture Search without Training" (ICML 2021), following their code
(BayesWatch/nas-without-training, ``score_networks.py``): on the data batch (``inputs.batches``
concatenated, N samples, the network in the mode it is given: train-mode batch norm), every
rectifier's input gives per sample the binary code c = (input > 0), flattened; with the codes of
all rectifiers concatenated (N x D),

    K = c cᵀ + (1 - c)(1 - c)ᵀ   (N x N: D minus the Hamming distances),   score = log|det K|

(``numpy.linalg.slogdet``'s log-magnitude, in double precision; a singular K gives ``-inf``).

Which modules: their code hooks every module whose class name contains ``ReLU``; we hook the
torch rectifier modules (``nn.ReLU``, ``nn.ReLU6``: the MBConv blocks' activation,
``nn.LeakyReLU``, ``nn.PReLU``, ``nn.RReLU``), not composite modules that happen to be named so
(``ReLUConvBN``, whose input is its inner ``nn.ReLU``'s and would count twice). A rectifier
applied functionally (``F.relu`` in the squeeze-excitation of mbconv's ``se=True``) is not seen.
As their code (a rectifier counts only if the backward pass reached it), a rectifier whose output
the logits do not depend on (an auxiliary head in train mode) is left out. The codes are taken
with a forward pre-hook, before an in-place rectifier overwrites its input. Higher is better.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.common import data_batch, hooked, kept_state

RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU)


def code_kernel(codes: torch.Tensor) -> torch.Tensor:
    """K = c cᵀ + (1 - c)(1 - c)ᵀ of binary codes ``codes`` (N x D), in double precision."""
    c = codes.to(torch.float64)
    return c @ c.T + (1 - c) @ (1 - c).T


def nwot(inputs: ProxyInputs) -> float:
    images, _ = data_batch(inputs, "nwot")
    model = inputs.model
    codes: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    handles = []
    for m in model.modules():
        if isinstance(m, RECTIFIERS):
            handles.append(
                m.register_forward_pre_hook(lambda m, args: codes.append(args[0].detach() > 0))
            )
            handles.append(m.register_forward_hook(lambda m, args, out: outputs.append(out)))
    n = images.shape[0]
    with kept_state(model):
        x = images.detach().clone().requires_grad_(True)
        with hooked(handles):
            logits = inputs.logits(x)
        live = [i for i, out in enumerate(outputs) if out.requires_grad]
        grads = (
            torch.autograd.grad(logits.sum(), [outputs[i] for i in live], allow_unused=True)
            if live
            else ()
        )
    K = torch.zeros(n, n, dtype=torch.float64, device=images.device)
    for i, grad in zip(live, grads):
        if grad is not None:
            K += code_kernel(codes[i].reshape(n, -1))
    return float(np.linalg.slogdet(K.cpu().numpy())[1])


register_proxy(
    "nwot",
    nwot,
    data_free=False,
    paper="Mellor et al., Neural Architecture Search without Training, ICML 2021 (NASWOT)",
)
