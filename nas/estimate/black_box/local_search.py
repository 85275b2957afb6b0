"""Local search (White, Nolen, Siems & Savani, "Exploring the Loss Landscape in Neural
Architecture Search", UAI 2021, Algorithm 1): from a random architecture, evaluate its
neighbours (one op or one input changed: ``Moves.neighbours``) in random order and move to the
first that improves on it; at a local optimum (no neighbour better), restart from a new random
architecture. With ``first_improvement=false`` every neighbour is evaluated and the best taken
(the paper's "best improvement" variant)."""

from __future__ import annotations

import torch

from nas.estimate.black_box.base import (
    BlackBoxSearch,
    Evaluator,
    Moves,
    rank_key,
    register_method,
)


class LocalSearch(BlackBoxSearch):
    def __init__(self, first_improvement: bool = True):
        super().__init__(first_improvement=first_improvement)
        self.first_improvement = first_improvement

    def search(self, moves: Moves, evaluator: Evaluator) -> None:
        while True:
            current = moves.random()
            score = evaluator(current)
            while True:
                options = moves.neighbours(current)
                order = torch.randperm(len(options), generator=moves.generator).tolist()
                best, best_score = None, score
                for i in order:
                    s = evaluator(options[i])
                    if rank_key(s) > rank_key(best_score):
                        best, best_score = options[i], s
                        if self.first_improvement:
                            break
                if best is None:  # a local optimum: restart
                    break
                current, score = best, best_score


register_method("local_search", LocalSearch)
