"""Seeded, resumable batch sampling shared by both pipelines.

A :class:`ResumableBatchSampler` yields one list per batch of ``(index, sample_seed, iteration,
position)`` tuples. The permutation (and, for the per-sample pipeline, one seed per sample for its
augmentation) is drawn from a CPU generator at the start of every pass, so the whole sequence of
epochs is fixed by the run seed, independent of worker count or device. It records, per pass,
the generator state before and after the draw, so a datamodule can save "pass started at state S,
``k`` batches delivered" and a restored sampler redraws the same pass and skips the first ``k``
batches: mid-epoch resume continues with the batches a straight run would have seen.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

Item = tuple[int, int, int, int]  # (index, sample_seed, iteration, position)
_SEED_HIGH = 2**62


class ResumableBatchSampler(Sampler[list[Item]]):
    """Batches of ``(index, sample_seed, iteration, position)``, shuffled or in order.

    Args:
        size: Dataset length.
        batch_size: Samples per batch (the last batch may be smaller).
        generator: CPU generator for the shuffle; ``None`` = in order, seeds 0 (evaluation).
        sample_seeds: Also draw one augmentation seed per sample (per-sample pipeline).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        sample_seeds: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.size, self.batch_size = int(size), int(batch_size)
        # Distributed: every rank draws the same global batch and keeps every world_size-th
        # sample of it, so the global batch is the single-device batch (DDP semantics).
        self.rank, self.world_size = int(rank), int(world_size)
        self.generator = generator
        self.sample_seeds = sample_seeds
        self.records: OrderedDict[int, tuple[torch.Tensor, torch.Tensor, int]] = OrderedDict()
        self._next_iteration = 0
        self._skip = 0

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def resume(self, state: torch.Tensor, skip: int) -> None:
        """The next pass starts from generator ``state`` and skips its first ``skip`` batches."""
        if self.generator is None:
            raise ValueError("an unshuffled sampler has nothing to resume")
        self.generator.set_state(state)
        self._skip = int(skip)

    def __iter__(self) -> Iterator[list[Item]]:
        n, bs = self.size, self.batch_size
        iteration = self._next_iteration
        self._next_iteration += 1
        skip, self._skip = self._skip, 0
        if self.generator is None:
            order, seeds = torch.arange(n), torch.zeros(n, dtype=torch.long)
        else:
            start = self.generator.get_state()
            order = torch.randperm(n, generator=self.generator)
            seeds = (
                torch.randint(0, _SEED_HIGH, (n,), generator=self.generator)
                if self.sample_seeds
                else torch.zeros(n, dtype=torch.long)
            )
            self.records[iteration] = (start, self.generator.get_state(), len(self))
            while len(self.records) > 16:  # only the last passes can still be in flight
                self.records.popitem(last=False)
        order, seeds = order.tolist(), seeds.tolist()
        for b in range(skip, len(self)):
            idx = list(range(b * bs, min(n, (b + 1) * bs)))
            if self.world_size > 1:
                # A last batch smaller than the world wraps around, so no rank gets nothing.
                idx = (idx + list(range(self.world_size)))[: max(len(idx), self.world_size)]
                idx = idx[self.rank :: self.world_size]
            yield [(order[i], seeds[i], iteration, b) for i in idx]
