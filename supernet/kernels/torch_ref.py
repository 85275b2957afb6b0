"""Reference PyTorch implementation of the mixed-op weighted sum."""

from __future__ import annotations

import torch


def weighted_sum(outputs: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_i weights[i] * outputs[i]``, accumulated in place (addcmul_) after the first product.

    Args:
        outputs: candidate outputs, all of one shape.
        weights: shape ``[len(outputs)]``.
    """
    if len(outputs) != weights.shape[0]:
        raise ValueError(f"{len(outputs)} outputs but {weights.shape[0]} weights.")
    # One unbind, not one indexing per candidate: its backward is one stack of the weight
    # gradients instead of a zero-filled copy and an add per candidate.
    w = weights.unbind(0)
    total = outputs[0] * w[0]
    for i in range(1, len(outputs)):
        total.addcmul_(outputs[i], w[i])  # no temporary per candidate
    return total
