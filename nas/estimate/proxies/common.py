"""What the proxies share: the weighted layers they score, the data batch they read, and a guard
that gives the network back with its modes and ``requires_grad`` flags as they were.

Conventions of every data-based proxy (unless its file says otherwise): the batches of
``inputs.batches`` are concatenated into one batch (Abdelfattah et al.'s ``get_some_data`` does
the same with its ``num_batches``); the network runs in the mode it is given (train mode: batch
norm uses batch statistics); gradients come from ``torch.autograd.grad``, so no ``.grad`` is
written; "the weights" are those of every ``nn.Conv2d`` and ``nn.Linear`` (subclasses included),
the layers Abdelfattah et al.'s ``get_layer_metric_array`` scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from nas.estimate.proxies.base import PROXIES, ProxyInputs

WEIGHTED_LAYERS = (nn.Conv2d, nn.Linear)


def weighted_layers(model: nn.Module) -> list[nn.Module]:
    """The ``nn.Conv2d`` and ``nn.Linear`` modules of ``model``, in ``model.modules()`` order."""
    return [m for m in model.modules() if isinstance(m, WEIGHTED_LAYERS)]


def layer_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight tensors of ``weighted_layers(model)``."""
    return [m.weight for m in weighted_layers(model)]


def data_batch(inputs: ProxyInputs, proxy: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``inputs.batches`` concatenated into one ``(images, labels)`` batch; a clear error when
    there are none (a data-based proxy named in a run without data batches)."""
    if not inputs.batches:
        raise ValueError(no_batches_message(proxy))
    images = torch.cat([x for x, _ in inputs.batches])
    labels = torch.cat([y for _, y in inputs.batches])
    return images, labels


def no_batches_message(proxy: str) -> str:
    data_free = sorted(name for name, p in PROXIES.items() if p.data_free)
    return (
        f"Zero-cost proxy {proxy!r} reads data, but it was given no batches: set "
        f"estimate.batches >= 1 (the data-free proxies are: {', '.join(data_free)})."
    )


def loss_on(inputs: ProxyInputs, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The training loss of the network's logits on one batch."""
    return inputs.loss(inputs.logits(images), labels)


def weight_grads(
    outputs: torch.Tensor, weights: list[torch.Tensor], create_graph: bool = False
) -> list[torch.Tensor]:
    """d outputs / d weight for every weight; zeros for a weight the output does not reach
    (an auxiliary head in train mode), as Abdelfattah et al.'s ``zeros_like`` fallback."""
    grads = torch.autograd.grad(outputs, weights, allow_unused=True, create_graph=create_graph)
    return [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]


@contextmanager
def kept_state(model: nn.Module, grad_weights: bool = True) -> Iterator[None]:
    """Runs the body with gradients enabled (and, with ``grad_weights``, every parameter
    requiring grad), then restores every module's train/eval mode and every parameter's
    ``requires_grad``. The parameters' values may change in the body (proxies get a copy)."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        if grad_weights:
            for p, _ in flags:
                p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def hooked(handles: list[torch.utils.hooks.RemovableHandle]) -> Iterator[None]:
    """Removes the given hook handles when the body ends, however it ends."""
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def model_device_dtype(model: nn.Module, inputs: ProxyInputs) -> tuple[torch.device, torch.dtype]:
    """Where and in what floating type the network computes: its first parameter's, else the
    inputs' device and the default dtype."""
    param = next(model.parameters(), None)
    if param is None:
        return inputs.device, torch.get_default_dtype()
    return param.device, param.dtype
