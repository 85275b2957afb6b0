"""First-order DARTS (Liu et al., ICLR 2019, sec. 2.3 with ξ = 0): ∇_α L_val(w, α)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from nas.search import SearchModule

Batch = tuple[torch.Tensor, torch.Tensor]


class FirstOrder:
    """Treats the weights as constant; only the α gradient is computed (no weight gradients)."""

    def __call__(
        self, module: SearchModule, train: Batch, val: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fills ``alpha.grad`` and returns the validation loss and logits."""
        alphas = list(module.arch.alphas.values())
        loss, logits = module.loss(val, module.arch.as_dict())
        loss = loss + module.arch_regularization()
        grads = torch.autograd.grad(loss, alphas, materialize_grads=True)
        for a, g in zip(alphas, grads):
            a.grad = g
        return loss.detach(), logits.detach()
