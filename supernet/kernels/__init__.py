"""Backends for the mixed-op core: the weighted sum of candidate outputs.

``mix(outputs, weights)`` computes ``sum_i weights[i] * outputs[i]``. The PyTorch path is the
reference and is always available; fused GPU kernels plug in here by name.
"""

from __future__ import annotations

import torch

from supernet.kernels.torch_ref import weighted_sum

BACKENDS = ("auto", "torch")


def resolve_backend(name: str, device: torch.device | None = None) -> str:
    """Maps a requested backend name to the one that will run; bad names raise."""
    if name not in BACKENDS:
        raise ValueError(
            f"Unknown mixed-op kernel backend {name!r}. Valid choices are: {', '.join(BACKENDS)}."
        )
    return "torch"


def mix(outputs: list[torch.Tensor], weights: torch.Tensor, backend: str = "torch") -> torch.Tensor:
    """Weighted sum of same-shaped candidate outputs; ``weights`` has one entry per output."""
    return weighted_sum(outputs, weights)
