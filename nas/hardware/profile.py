"""Parameter and multiply-add counts of a network, as NAS papers report them.

Parameters exclude the auxiliary head (it is dropped at test time). Multiply-adds count the
convolution and linear layers of one forward pass in eval mode at the given input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def count_params(model: nn.Module, exclude_prefix: str = "auxiliary") -> int:
    return sum(
        p.numel() for name, p in model.named_parameters() if not name.startswith(exclude_prefix)
    )


def count_macs(model: nn.Module, input_shape: Sequence[int], forward_args: tuple = ()) -> int:
    """Multiply-adds of conv and linear layers for one sample of ``input_shape`` ([C, H, W])."""
    total = 0

    def conv_hook(module: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() // output.shape[0] * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, inputs, output) -> None:
        nonlocal total
        total += output.numel() // output.shape[0] * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device), *forward_args)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
