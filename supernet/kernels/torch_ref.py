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
    total = outputs[0] * weights[0]
    for i in range(1, len(outputs)):
        total.addcmul_(outputs[i], weights[i])  # no temporary per candidate
    return total
