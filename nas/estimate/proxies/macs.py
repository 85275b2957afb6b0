"""Multiply-accumulates of one forward pass, counted with forward hooks on ``nn.Conv2d`` and
``nn.Linear`` (subclasses included).

The same convention as ``nas.hardware.profile.count_macs`` (a sibling room that ``nas.estimate``
may not import; a test checks the two agree on the child networks): the network in eval mode,
one all-zeros sample of ``input_shape``; a convolution counts its output elements times its
inputs per group times its kernel area, a linear layer its output elements times its input
features. Batch norm, pooling, activations and additions are not counted (NAS papers' "FLOPs").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nas.estimate.proxies.common import hooked


def conv_linear_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of ``model``'s conv and linear layers for one sample of ``input_shape``
    ([C, H, W]); a layer called more than once counts every call."""
    total = 0

    def count(module: nn.Module, args, output) -> None:
        nonlocal total
        per_sample = output.numel() // output.shape[0]
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += per_sample * (module.in_channels // module.groups) * kh * kw
        else:
            total += per_sample * module.in_features

    handles = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    modes = [(m, m.training) for m in model.modules()]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    model.eval()
    try:
        with hooked(handles), torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        for m, training in modes:
            m.training = training
    return total
