"""Parameter and multiply-add counts of a network, as NAS papers report them.

Parameters exclude the auxiliary head (it is dropped at test time). Multiply-adds count the
convolution and linear layers of one forward pass in eval mode at the given input size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn


def count_params(model: nn.Module, exclude_prefix: str = "auxiliary") -> int:
    return sum(
        p.numel() for name, p in model.named_parameters() if not name.startswith(exclude_prefix)
    )


def count_macs(model: nn.Module, input_shape: Sequence[int], forward_args: tuple = ()) -> int:
    """Multiply-adds of conv and linear layers for one sample of ``input_shape`` ([C, H, W])."""
    return sum(module_macs(model, input_shape, forward_args).values())


def module_macs(
    model: nn.Module, input_shape: Sequence[int], forward_args: tuple = ()
) -> dict[str, int]:
    """Multiply-adds per conv / linear module name for one sample of ``input_shape`` (eval
    mode, on the model's device; ``forward_args`` follow the input, e.g. a supernet's mixing
    weights). A conv's count is its output size times its inputs per group times its kernel
    area; a linear's, its output size times its input features. The one MACs counter: the
    cost tables (``nas.hardware.costs``) sum these per op and for the fixed part."""
    out: dict[str, int] = {}

    def conv_hook(module: nn.Conv2d, inputs, output, name: str) -> None:
        kh, kw = module.kernel_size
        n = output.numel() // output.shape[0] * (module.in_channels // module.groups) * kh * kw
        out[name] = out.get(name, 0) + n

    def linear_hook(module: nn.Linear, inputs, output, name: str) -> None:
        out[name] = out.get(name, 0) + output.numel() // output.shape[0] * module.in_features

    handles = []
    for name, m in model.named_modules():
        hook = (
            conv_hook
            if isinstance(m, nn.Conv2d)
            else linear_hook
            if isinstance(m, nn.Linear)
            else None
        )
        if hook is not None:
            handles.append(m.register_forward_hook(functools.partial(hook, name=name)))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device), *forward_args)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return out
