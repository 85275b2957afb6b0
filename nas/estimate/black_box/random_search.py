"""Random search (Li & Talwalkar, UAI 2019; the baseline every black-box method is compared
with): uniformly random architectures (``SearchSpace.random_genotype``) until the budget is
spent."""

from __future__ import annotations

from nas.estimate.black_box.base import BlackBoxSearch, Evaluator, Moves, register_method


class RandomSearch(BlackBoxSearch):
    def search(self, moves: Moves, evaluator: Evaluator) -> None:
        misses = 0
        while not evaluator.spent:
            choice = moves.random()
            if choice in evaluator.cache:  # a small space can run out of new architectures
                misses += 1
                if misses > 1000:
                    return
                continue
            evaluator(choice)


register_method("random", RandomSearch)
