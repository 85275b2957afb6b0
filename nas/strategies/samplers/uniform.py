"""Uniform single-path sampling: one random architecture of the space per forward pass.

Random search with weight sharing (Li & Talwalkar, "Random Search and Reproducibility for
Neural Architecture Search", UAI 2019) and single-path one-shot (Guo et al., "Single Path
One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020) train the supernet this
way; α is not learned. The space decides what a uniformly random node looks like
(``SearchSpace.sample_node``: NAS-Bench-201 one of all ops on every edge; DARTS two distinct inputs with
ops other than ``none``).

A discrete architecture ("arch") is, per cell type, a tuple with one op index per edge
(-1 = edge unused).
"""

from __future__ import annotations

import torch

from nas.strategies.samplers.base import Mixing, Sampler

Arch = dict[str, tuple[int, ...]]


def sample_arch(space, generator: torch.Generator) -> Arch:
    """A uniformly random architecture of ``space``, node by node."""
    arch = {}
    for cell in space.cell_types:
        arch[cell] = tuple(space.sample_cell(generator))
    return arch


def arch_mixing(arch: Arch, n_ops: int, like: torch.Tensor | None = None) -> Mixing:
    """One-hot weights and single-op active lists of a discrete architecture."""
    weights, active = {}, {}
    for cell, choice in arch.items():
        w = torch.zeros(len(choice), n_ops)
        for e, k in enumerate(choice):
            if k >= 0:
                w[e, k] = 1.0
        if like is not None:
            w = w.to(device=like.device, dtype=like.dtype)
        weights[cell] = w
        active[cell] = [[k] if k >= 0 else [] for k in choice]
    return Mixing(weights, active)


def arch_alphas(arch: Arch, n_ops: int) -> dict[str, torch.Tensor]:
    """α that encodes ``arch``: 1 on each chosen op, 0 elsewhere, so the space's selection rule
    on softmax(α) gives back exactly ``arch``'s genotype (written after RSWS/SPOS selection)."""
    return {cell: w for cell, w in arch_mixing(arch, n_ops).weights.items()}


class UniformPathSampler(Sampler):
    """Ignores α; every call draws a fresh uniformly random architecture of the space."""

    samples_paths = True

    def setup(self, seed: int = 0, space=None, **_) -> None:
        super().setup(seed)
        if space is not None:
            self.space = space

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        if getattr(self, "space", None) is None:
            raise RuntimeError("UniformPathSampler needs setup(space=...) before sampling.")
        if self.generator is None:
            self.setup(space=self.space)
        like = next(iter(alphas.values()))
        return arch_mixing(sample_arch(self.space, self.generator), like.shape[1], like.detach())
