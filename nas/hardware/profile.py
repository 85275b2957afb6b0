"""Parameter and multiply-add counts of a network, as NAS papers report them.

Parameters exclude the auxiliary head (it is dropped at test time). Multiply-adds count the
convolution and linear layers of one forward pass in eval mode at the given input size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn

from supernet.choices import Attention
from supernet.choices.language import CausalSelfAttention


def count_params(model: nn.Module, exclude_prefix: str = "auxiliary") -> int:
    return sum(
        p.numel() for name, p in model.named_parameters() if not name.startswith(exclude_prefix)
    )


def count_macs(
    model: nn.Module,
    input_shape: Sequence[int],
    forward_args: tuple = (),
    dtype: torch.dtype = torch.float32,
) -> int:
    """Multiply-adds of conv and linear layers for one sample of ``input_shape`` ([C, H, W];
    ``[T]`` token ids with ``dtype=torch.long``)."""
    return sum(module_macs(model, input_shape, forward_args, dtype).values())


def module_macs(
    model: nn.Module,
    input_shape: Sequence[int],
    forward_args: tuple = (),
    dtype: torch.dtype = torch.float32,
) -> dict[str, int]:
    """Multiply-adds per conv / linear module name for one sample of ``input_shape`` (eval
    mode, on the model's device; ``forward_args`` follow the input, e.g. a supernet's mixing
    weights). A conv's count is its output size times its inputs per group times its kernel
    area; a linear's, its output size times its input features; an ``nn.MultiheadAttention``'s,
    its four projections and the T x S attention products (scores and weighted sums, the
    quadratic term); a ``supernet.choices.Attention``'s products (its projections are Linear). The one MACs counter: the
    cost tables (``nas.hardware.costs``) sum these per op and for the fixed part."""
    out: dict[str, int] = {}

    def conv_hook(module: nn.Conv2d, inputs, output, name: str) -> None:
        kh, kw = module.kernel_size
        n = output.numel() // output.shape[0] * (module.in_channels // module.groups) * kh * kw
        out[name] = out.get(name, 0) + n

    def linear_hook(module: nn.Linear, inputs, output, name: str) -> None:
        out[name] = out.get(name, 0) + output.numel() // output.shape[0] * module.in_features

    def attention_hook(module: nn.MultiheadAttention, inputs, output, name: str) -> None:
        # Its projections are parameters, not Linear modules (no hook of their own): q from the
        # T queries, k and v from the S keys, T x S scores and weighted sums, the output proj.
        q, k = inputs[0], inputs[1]
        seq = 1 if module.batch_first else 0
        T, S, E = q.shape[seq], k.shape[seq], module.embed_dim
        n = T * E * E + S * E * (module.kdim + module.vdim) + 2 * T * S * E + T * E * E
        out[name] = out.get(name, 0) + n

    def products_hook(module: Attention | CausalSelfAttention, inputs, output, name: str) -> None:
        # Its projections are Linear modules (counted by theirs): the T x T scores and sums.
        T = inputs[0].shape[1]
        out[name] = out.get(name, 0) + 2 * T * T * module.heads * module.head_dim

    handles = []
    skip: tuple[str, ...] = ()  # an attention's out_proj: counted by the attention's hook
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            skip += (f"{name}.out_proj",)
        if name in skip:
            continue
        hook = (
            conv_hook
            if isinstance(m, nn.Conv2d)
            else linear_hook
            if isinstance(m, nn.Linear)
            else attention_hook
            if isinstance(m, nn.MultiheadAttention)
            else products_hook
            if isinstance(m, (Attention, CausalSelfAttention))
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
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype), *forward_args)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return out
