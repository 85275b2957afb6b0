"""Black-box search over an estimator: the architecture moves every method shares, the budget,
and the best-so-far curve.

A search method (regularized evolution, local search, BANANAS, random search) sees the space
only through ``Moves`` (random architectures, neighbours, mutations) and an ``evaluate``
function genotype -> score (higher is better: a proxy, a predictor, a benchmark's accuracy, a
trained supernet's accuracy with inherited weights). It spends ``budget`` evaluations; every
evaluation is recorded in order, so the curve of the best score so far is exact. An
architecture already evaluated is looked up, not evaluated again (and does not count).

Choices: per cell type, one op index per α row (-1: the edge is unused), the form
``nas.strategies.samplers.uniform`` also uses; ``Moves.genotype`` turns one into the space's
genotype.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from nas.core.registry import Registry
from supernet.genotypes import GenotypeBase
from supernet.spaces.base import SearchSpace

Choice = tuple[tuple[int, ...], ...]  # per cell type (space.cell_types order), per α row
Evaluate = Callable[[GenotypeBase], float]


class Moves:
    """Random architectures, neighbours and mutations of a space's choices."""

    def __init__(self, space: SearchSpace, generator: torch.Generator):
        self.space = space
        self.generator = generator
        self.row_of = {edge: r for r, edge in enumerate(space.edges)}
        # α rows of each node, in order (edges are listed node by node)
        self.node_rows: list[list[int]] = []
        start = 0
        for n in space.edges_per_node:
            self.node_rows.append(list(range(start, start + n)))
            start += n

    def choice(self, genotype: GenotypeBase) -> Choice:
        kept = genotype.kept_edges()
        out = []
        for cell in self.space.cell_types:
            row = [-1] * len(self.space.edges)
            for op, i, j in kept[cell]:
                row[self.row_of[(i, j)]] = self.space.ops.index(op)
            out.append(tuple(row))
        return tuple(out)

    def genotype(self, choice: Choice) -> GenotypeBase:
        kept = {}
        for cell, rows in zip(self.space.cell_types, choice, strict=True):
            kept[cell] = [
                (self.space.ops[k], i, j)
                for k, (i, j) in zip(rows, self.space.edges, strict=True)
                if k >= 0
            ]
        return self.space.genotype_from_edges(kept)

    def random(self) -> Choice:
        return self.choice(self.space.random_genotype(self.generator))

    def neighbours(self, choice: Choice) -> list[Choice]:
        """Every choice one move away: one used edge's op changed (among the row's
        ``selectable_ops``), or one used edge moved to an unused edge of the same node with its
        op (DARTS cells: a node's other input). The space's genotype check keeps only valid
        ones."""
        out = []
        for c, rows in enumerate(choice):
            for node in self.node_rows:
                used = [r for r in node if rows[r] >= 0]
                unused = [r for r in node if rows[r] < 0]
                for r in used:
                    for k in self.space.selectable_ops(r):
                        if k != rows[r]:
                            out.append(_with(choice, c, {r: k}))
                    for u in unused:
                        if rows[r] in self.space.selectable_ops(u):
                            out.append(_with(choice, c, {r: -1, u: rows[r]}))
        return [n for n in out if self.valid(n)]

    def mutate(self, choice: Choice) -> Choice:
        """A uniformly random neighbour (Real et al. 2019's mutation: one op or one input)."""
        options = self.neighbours(choice)
        return options[int(torch.randint(len(options), (1,), generator=self.generator))]

    def valid(self, choice: Choice) -> bool:
        try:
            self.space.validate_genotype(self.genotype(choice))
        except ValueError:
            return False
        return True


def _with(choice: Choice, cell: int, changes: dict[int, int]) -> Choice:
    rows = list(choice[cell])
    for r, k in changes.items():
        rows[r] = k
    return tuple(tuple(rows) if c == cell else choice[c] for c in range(len(choice)))


@dataclass
class Trace:
    """Every evaluation in order: the architecture's text, its score, the best so far."""

    archs: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    best_so_far: list[float] = field(default_factory=list)
    best_arch: str | None = None
    best_score: float = -math.inf

    def add(self, arch: str, score: float) -> None:
        self.archs.append(arch)
        self.scores.append(score)
        if math.isfinite(score) and score > self.best_score:
            self.best_score, self.best_arch = score, arch
        self.best_so_far.append(self.best_score)

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluations": len(self.scores),
            "best_arch": self.best_arch,
            "best_score": self.best_score if math.isfinite(self.best_score) else None,
            "non_finite": sum(not math.isfinite(s) for s in self.scores),
        }


class Budget(Exception):
    """The evaluation budget is spent (ends a method's loop wherever it is)."""


class Evaluator:
    """``evaluate`` with a budget, a cache by architecture, and the trace. A non-finite score
    is recorded as such and never becomes the best."""

    def __init__(self, moves: Moves, evaluate: Evaluate, budget: int):
        if budget < 1:
            raise ValueError(f"estimate.budget={budget}: give at least 1 evaluation.")
        self.moves, self.evaluate, self.budget = moves, evaluate, budget
        self.cache: dict[Choice, float] = {}
        self.trace = Trace()

    def __call__(self, choice: Choice) -> float:
        if choice in self.cache:
            return self.cache[choice]
        if len(self.trace.scores) >= self.budget:
            raise Budget
        genotype = self.moves.genotype(choice)
        score = float(self.evaluate(genotype))
        self.cache[choice] = score
        self.trace.add(str(genotype), score)
        return score

    @property
    def spent(self) -> bool:
        return len(self.trace.scores) >= self.budget


def rank_key(score: float) -> float:
    """Sort key that puts non-finite scores last."""
    return score if math.isfinite(score) else -math.inf


class BlackBoxSearch(ABC):
    """A search method; ``run`` evaluates until the budget is spent (or the method ends)."""

    def __init__(self, **options: Any):
        self.options = options

    @abstractmethod
    def search(self, moves: Moves, evaluator: Evaluator) -> None:
        """Calls ``evaluator`` on choices until it raises ``Budget`` or the method is done."""

    def run(self, space: SearchSpace, evaluate: Evaluate, budget: int, seed: int) -> Trace:
        moves = Moves(space, torch.Generator().manual_seed(seed))
        evaluator = Evaluator(moves, evaluate, budget)
        try:
            self.search(moves, evaluator)
        except Budget:
            pass
        return evaluator.trace


METHODS: Registry[type[BlackBoxSearch]] = Registry("black-box search method", "estimate.search")


def register_method(name: str, cls: type[BlackBoxSearch]) -> type[BlackBoxSearch]:
    if not (isinstance(cls, type) and issubclass(cls, BlackBoxSearch)):
        raise TypeError(f"register_method({name!r}, {cls!r}): not a BlackBoxSearch subclass.")
    return METHODS.add(name, cls)


def build_method(name: str, **options: Any) -> BlackBoxSearch:
    return METHODS.lookup(name)(**options)
