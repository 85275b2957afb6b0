"""Edge normalization (Xu et al., PC-DARTS, ICLR 2020, sec. 3.3).

Each edge (i→j) gets a parameter β_{i,j}; a node sums its incoming edges weighted by the softmax
of β over those edges. It stabilises the edge choice that partial channels make noisy; the
selection ranks edges by softmax(α) · softmax(β)-per-node.
"""

from __future__ import annotations

import torch

from nas.core.arch import split_arch
from nas.strategies.protocols import Mixing, Modifier


def normalized_edge_weights(beta: torch.Tensor, edges_per_node: list[int]) -> torch.Tensor:
    """Softmax of ``beta`` ([edges]) within each node's group of incoming edges."""
    return torch.cat([torch.softmax(part, dim=-1) for part in beta.split(edges_per_node)])


class EdgeNormalization(Modifier):
    """Adds per-edge β to the architecture parameters and weights each edge by its softmax."""

    def setup(self, seed: int = 0, space=None, **_) -> None:
        if space is not None:
            self.edges_per_node = space.edges_per_node

    def arch_options(self) -> dict[str, bool]:
        return {"edge_betas": True}

    def _edge_weights(self, arch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        _, betas = split_arch(arch)
        if not betas:
            raise ValueError("Edge normalization needs per-edge β ('betas' in the alphas file).")
        return {c: normalized_edge_weights(b, self.edges_per_node) for c, b in betas.items()}

    def mixing(self, mix: Mixing, arch: dict[str, torch.Tensor]) -> Mixing:
        mix.edge_weights = self._edge_weights(arch)
        return mix

    def probabilities(
        self, probs: dict[str, torch.Tensor], arch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        ew = self._edge_weights({k: v.detach().float() for k, v in arch.items()})
        return {c: p * ew[c].to(p)[:, None] for c, p in probs.items()}
