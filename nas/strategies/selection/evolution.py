"""Evolutionary architecture search on the trained supernet (Guo et al., "Single Path One-Shot
Neural Architecture Search with Uniform Sampling", ECCV 2020, sec. 3.4 and Alg. 1).

Population 50, 20 generations; each generation keeps the top 10 as parents and breeds 25
children by mutation (each node's choice redrawn with probability 0.1) and 25 by crossover
(each node's choice taken from one of two parents), all distinct and new; fitness is the
validation accuracy with the shared weights. Returns the best architecture seen.

With ``max_macs`` (SPOS' FLOPs constraint, sec. 3.4: only candidates under the budget are
kept), every candidate (initial, mutated or crossed) whose child network has more
multiply-adds than ``max_macs`` is rejected before it is scored and redrawn; the child is
built from the candidate's genotype (``space.build_child``, retraining sizes) and counted
with ``nas.hardware.profile.count_macs`` at the space's input size, cached per architecture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nas.hardware.profile import count_macs
from nas.strategies.protocols import Selector
from nas.strategies.samplers.uniform import Arch, arch_alphas, sample_arch
from nas.strategies.selection.scoring import Batch, score_arch
from supernet.spaces.shapes import example_input


def _key(arch: Arch) -> tuple:
    return tuple(sorted(arch.items()))


class EvolutionSelector(Selector):
    """SPOS' evolutionary search, optionally under a multiply-add budget ``max_macs``."""

    def __init__(
        self,
        population: int = 50,
        iterations: int = 20,
        parents: int = 10,
        mutations: int = 25,
        crossovers: int = 25,
        mutation_prob: float = 0.1,
        eval_batches: int = 1,
        max_tries: int = 1000,
        max_macs: int | None = None,
        child_sizes: dict[str, Any] | None = None,
    ):
        if min(population, iterations, parents, eval_batches) < 1:
            raise ValueError("EvolutionSelector sizes must be >= 1.")
        self.population, self.iterations, self.parents = population, iterations, parents
        self.mutations, self.crossovers = mutations, crossovers
        self.mutation_prob, self.eval_batches, self.max_tries = (
            mutation_prob,
            eval_batches,
            max_tries,
        )
        self.max_macs, self.child_sizes = max_macs, dict(child_sizes or {})
        self._macs: dict[tuple, int] = {}

    def setup(self, seed: int = 0, space=None, **_) -> None:
        self.generator = torch.Generator().manual_seed(seed + 6151)
        self.space = space

    def macs(self, arch: Arch) -> int:
        """Multiply-adds of ``arch``'s child network (cached)."""
        from nas.strategies.selection import select

        key = _key(arch)
        if key not in self._macs:
            probs = arch_alphas(arch, len(self.space.ops))
            genotype = select(self.space.default_selection, probs, self.space)
            child = self.space.build_child(genotype, **self.child_sizes)
            dtype = example_input(self.space.input_shape).dtype  # token ids: text
            self._macs[key] = count_macs(child, self.space.input_shape, dtype=dtype)
        return self._macs[key]

    def feasible(self, arch: Arch) -> bool:
        return self.max_macs is None or self.macs(arch) <= self.max_macs

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def _pick(self, items: list) -> Any:
        return items[int(torch.randint(len(items), (), generator=self.generator))]

    def _nodes(self) -> list[tuple[int, int]]:
        spans, first = [], 0
        for n in self.space.edges_per_node:
            spans.append((first, first + n))
            first += n
        return spans

    def mutate(self, arch: Arch) -> Arch:
        out = {}
        for cell, choice in arch.items():
            new = list(choice)
            for lo, hi in self._nodes():
                if self._rand() < self.mutation_prob:
                    new[lo:hi] = self.space.sample_rows(lo, hi - lo, self.generator)
            out[cell] = tuple(new)
        return out

    def crossover(self, a: Arch, b: Arch) -> Arch:
        out = {}
        for cell in a:
            new = []
            for lo, hi in self._nodes():
                new.extend((a if self._rand() < 0.5 else b)[cell][lo:hi])
            out[cell] = tuple(new)
        return out

    def __call__(self, supernet, batches: Sequence[Batch]) -> tuple[Arch, dict[str, Any]]:
        n_ops = len(self.space.ops)
        fitness: dict[tuple, float] = {}
        archs: dict[tuple, Arch] = {}

        def add(arch: Arch, pool: list) -> bool:
            key = _key(arch)
            if key in fitness or key in [_key(p) for p in pool] or not self.feasible(arch):
                return False
            pool.append(arch)
            return True

        def evaluate(pool: list) -> None:
            for arch in pool:
                key = _key(arch)
                archs[key] = arch
                fitness[key] = score_arch(supernet, arch, batches, n_ops)

        pool: list[Arch] = []
        for _ in range(self.max_tries):
            if len(pool) >= self.population:
                break
            add(sample_arch(self.space, self.generator), pool)
        evaluate(pool)
        population = list(pool)
        for _ in range(self.iterations):
            ranked = sorted(population, key=lambda a: -fitness[_key(a)])
            top = ranked[: self.parents]
            children: list[Arch] = []
            for _ in range(self.max_tries):
                if len(children) >= self.mutations:
                    break
                add(self.mutate(self._pick(top)), children)
            n_mut = len(children)
            for _ in range(self.max_tries):
                if len(children) >= n_mut + self.crossovers:
                    break
                add(self.crossover(self._pick(top), self._pick(top)), children)
            evaluate(children)
            population = top + children
        if not fitness:
            raise RuntimeError(
                f"No architecture under max_macs={self.max_macs} found in {self.max_tries} draws."
            )
        best_key = max(fitness, key=lambda k: fitness[k])  # max keeps the first of ties
        info = {
            "selector": "evolution",
            "evaluated": len(fitness),
            "best_val_acc": fitness[best_key],
        }
        if self.max_macs is not None:
            info["max_macs"] = self.max_macs
            info["best_macs"] = self.macs(archs[best_key])
        return archs[best_key], info
