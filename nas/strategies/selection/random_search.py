"""Post-search selection of random search with weight sharing (Li & Talwalkar, "Random Search
and Reproducibility for Neural Architecture Search", UAI 2019; NAS-Bench-201's RSWS baseline
samples 100 architectures and keeps the best on a validation batch).

After the supernet is trained with uniformly sampled paths, ``num_samples`` architectures are
drawn uniformly and scored with the shared weights on the same validation batches; the best is
returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nas.strategies.protocols import Selector
from nas.strategies.samplers.uniform import Arch, sample_arch
from nas.strategies.selection.scoring import Batch, score_arch


class RandomSearchSelector(Selector):
    """Best of ``num_samples`` uniformly sampled architectures on ``eval_batches`` val batches."""

    def __init__(self, num_samples: int = 100, eval_batches: int = 1):
        if num_samples < 1 or eval_batches < 1:
            raise ValueError("RandomSearchSelector needs num_samples >= 1 and eval_batches >= 1.")
        self.num_samples, self.eval_batches = num_samples, eval_batches

    def setup(self, seed: int = 0, space=None, **_) -> None:
        self.generator = torch.Generator().manual_seed(seed + 7919)
        self.space = space

    def __call__(self, supernet, batches: Sequence[Batch]) -> tuple[Arch, dict[str, Any]]:
        n_ops = len(self.space.ops)
        best, best_acc, seen = None, -1.0, {}
        for _ in range(self.num_samples):
            arch = sample_arch(self.space, self.generator)
            key = tuple(sorted(arch.items()))
            if key not in seen:
                seen[key] = score_arch(supernet, arch, batches, n_ops)
            if seen[key] > best_acc:  # strict: the first of equal scores wins
                best, best_acc = arch, seen[key]
        return best, {
            "selector": "random_search",
            "sampled": self.num_samples,
            "evaluated": len(seen),
            "best_val_acc": best_acc,
        }
