"""The sandwich rule: the largest path, the smallest path and random paths, in turn.

Yu & Huang, "Universally Slimmable Networks and Improved Training Techniques", ICCV 2019; used
by BigNAS (Yu et al., ECCV 2020) and Once-for-All (Cai et al., ICLR 2020) to train a weight-sharing
supernet whose every sub-network should work: besides random paths, the largest and the smallest
one are trained, which bound the rest. The papers accumulate the gradients of the 2 + n paths in
one optimizer step; here each weight step trains one path, so the sandwich spans 2 + n
consecutive steps (largest, smallest, n random). The space says what its largest and smallest
paths are (``SearchSpace.extreme_paths``: the largest and smallest value of every size decision;
a layer or input choice keeps its default in both); α is not learned, as in SPOS.
"""

from __future__ import annotations

from typing import Any

import torch

from nas.strategies.samplers.base import Mixing
from nas.strategies.samplers.uniform import UniformPathSampler, arch_mixing, sample_arch


class SandwichSampler(UniformPathSampler):
    """Largest, smallest, then ``random_paths`` uniformly random paths, one per forward pass."""

    def __init__(self, random_paths: int = 2):
        if not isinstance(random_paths, int) or random_paths < 0:
            raise ValueError(
                f"strategy.sampler.random_paths={random_paths!r} must be an integer >= 0 (the "
                "random paths between the largest and the smallest)."
            )
        self.random_paths = random_paths
        self.step = 0
        self.extremes: tuple[dict, dict] | None = None

    def setup(self, seed: int = 0, space=None, **_: Any) -> None:
        super().setup(seed, space)
        self.step = 0
        if space is not None:
            self.extremes = space.extreme_paths()
            if self.extremes is None:
                raise ValueError(
                    f"strategy=sandwich: search_space={space.name} has no largest and smallest "
                    "path (its choices are not sizes). The sandwich rule applies to spaces of "
                    "sized decisions: module (value choices), vit, gpt."
                )

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        if self.generator is None:
            self.setup(space=self.space)
        like = next(iter(alphas.values()))
        phase = self.step % (2 + self.random_paths)
        self.step += 1
        if phase < 2:
            arch = {cell: tuple(cols) for cell, cols in self.extremes[phase].items()}
        else:
            arch = sample_arch(self.space, self.generator)
        return arch_mixing(arch, like.shape[1], like.detach())

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.step = int(state.get("step", 0))
