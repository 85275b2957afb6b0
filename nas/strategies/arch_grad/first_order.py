"""First-order DARTS (Liu et al., ICLR 2019, sec. 2.3 with ξ = 0): ∇_α L_val(w, α).

With ``split="train"`` the α gradient is taken on the training batch instead: the single-level
optimisation of SNAS (Xie et al., ICLR 2019), where weights and α minimise the same loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from nas.strategies.protocols import ArchGradMode, ArchGradState, Batch


@contextmanager
def constant_weights(net: nn.Module) -> Iterator[None]:
    """The network's weights as constants: autograd records nothing for them, so the backward
    does no weight-gradient work and keeps fewer activations (and a compiled graph, whose
    backward computes every input's gradient, gets an α-only variant)."""
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class FirstOrder(ArchGradMode):
    """Treats the weights as constant; only the α (and β) gradient is computed."""

    def __init__(self, split: str = "val"):
        if split not in ("val", "train"):
            raise ValueError(f"FirstOrder split must be 'val' or 'train', got {split!r}.")
        self.split = split

    def __call__(
        self, state: ArchGradState, train: Batch, val: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fills the architecture parameters' ``.grad``; returns the loss and logits."""
        arch = state.arch.as_dict()
        params = list(arch.values())
        with constant_weights(state.supernet):
            # The logits and weight gradients are consumed here: a CUDA graph replay may serve.
            batch = val if self.split == "val" else train
            loss, logits = state.loss(batch, arch, graphable=True)
            loss = state.arch_objective(loss)
            grads = torch.autograd.grad(loss, params, materialize_grads=True)
        for a, g in zip(params, grads):
            a.grad = g
        return loss.detach(), logits.detach()
