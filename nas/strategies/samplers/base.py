"""The sampler interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Mixing:
    """What the supernet mixes with.

    Attributes:
        weights: per cell type, ``[edges, ops]`` mixing weights (differentiable in α).
        active: optional, per cell type and edge, the op indices to compute (None = all,
            ``[]`` = the edge is not used).
        edge_weights: optional, per cell type, ``[edges]`` factors applied to each edge's whole
            output (PC-DARTS' edge normalization).
    """

    weights: dict[str, torch.Tensor]
    active: dict[str, Sequence[Sequence[int] | None]] | None = None
    edge_weights: dict[str, torch.Tensor] | None = None


class Sampler:
    """Turns α into mixing weights. Subclasses cite their paper.

    Samplers that draw random numbers draw them once per call (one forward pass) from their
    own generator, seeded by ``setup``, so a seed fixes the search on CPU.
    """

    generator: torch.Generator | None = None
    # True for single-path samplers: a different set of ops runs every forward pass, which a
    # static compiled graph cannot follow (``compile=true`` leaves their supernet eager).
    samples_paths = False

    def setup(self, seed: int = 0, **_: Any) -> None:
        """Seeds the sampler's own random stream."""
        self.generator = torch.Generator().manual_seed(seed + 104729)

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Hook for schedules (e.g. Gumbel temperature)."""

    def probabilities(self, alphas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The per-edge op distribution that is logged and discretized (softmax by default)."""
        return {k: torch.softmax(a.detach().float(), dim=-1) for k, a in alphas.items()}

    def state_dict(self) -> dict[str, Any]:
        return {} if self.generator is None else {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator"])

    def _rand(self, like: torch.Tensor) -> torch.Tensor:
        """Uniform (0, 1) noise of ``like``'s shape from the sampler's CPU generator."""
        if self.generator is None:
            self.setup()
        u = torch.rand(like.shape, generator=self.generator, dtype=torch.float64)
        return u.clamp_(1e-10, 1 - 1e-10).to(device=like.device, dtype=like.dtype)
