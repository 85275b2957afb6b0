"""Regularized evolution (Real et al., "Regularized Evolution for Image Classifier
Architecture Search", AAAI 2019, Algorithm 1), as NAS-Bench-201 runs it (Dong & Yang 2020:
population 10, sample 3; ours are options).

A population of ``population`` random architectures; each cycle samples ``sample_size`` of them
uniformly, mutates the best of the sample (one op or one input: ``Moves.mutate``), evaluates
the child, adds it and removes the *oldest* member (ageing: the regularization).
"""

from __future__ import annotations

from collections import deque

import torch

from nas.estimate.black_box.base import (
    BlackBoxSearch,
    Evaluator,
    Moves,
    rank_key,
    register_method,
)


class RegularizedEvolution(BlackBoxSearch):
    def __init__(self, population: int = 10, sample_size: int = 3):
        if population < 2 or not 1 <= sample_size <= population:
            raise ValueError(
                f"estimate.population={population}, estimate.sample_size={sample_size}: need "
                "population >= 2 and 1 <= sample_size <= population."
            )
        super().__init__(population=population, sample_size=sample_size)
        self.population, self.sample_size = population, sample_size

    def search(self, moves: Moves, evaluator: Evaluator) -> None:
        members: deque = deque()
        while len(members) < self.population:
            choice = moves.random()
            members.append((choice, evaluator(choice)))
        while True:
            picks = torch.randperm(len(members), generator=moves.generator)[: self.sample_size]
            parent = max((members[int(i)] for i in picks), key=lambda m: rank_key(m[1]))
            child = moves.mutate(parent[0])
            members.append((child, evaluator(child)))
            members.popleft()


register_method("evolution", RegularizedEvolution)
