"""Black-box search over an estimator: the moves stay in the space, the budget and the trace are
exact, and each method finds the optimum of a known objective."""

from __future__ import annotations

import math

import pytest
import torch

from nas.estimate.black_box import METHODS, Evaluator, Moves, build_method
from nas.estimate.black_box.base import Budget
from supernet.spaces import build_space


def space(name: str):
    return build_space(name, [3, 32, 32], 10)


def conv_count(genotype) -> float:
    """A known objective: how many kept edges are 3x3 convolutions (NB201's optimum: 6)."""
    return float(sum(op == "nor_conv_3x3" for op, _, _ in genotype.kept_edges()["cell"]))


def differing_rows(a, b) -> list[tuple[int, int]]:
    return [(c, r) for c, (x, y) in enumerate(zip(a, b)) for r in range(len(x)) if x[r] != y[r]]


@pytest.mark.parametrize("name", ["nb201", "darts", "mbconv"])
def test_moves_round_trip_and_neighbours_are_one_move_away(name):
    sp = space(name)
    moves = Moves(sp, torch.Generator().manual_seed(0))
    for _ in range(5):
        choice = moves.random()
        assert moves.choice(moves.genotype(choice)) == choice
        neighbours = moves.neighbours(choice)
        assert neighbours and len(set(neighbours)) == len(neighbours)
        for n in neighbours:
            sp.validate_genotype(moves.genotype(n))  # every neighbour is in the space
            diff = differing_rows(choice, n)
            # one op changed, or (DARTS) one input moved: two rows of one node
            assert 1 <= len(diff) <= 2 and len({c for c, _ in diff}) == 1
            if len(diff) == 2:
                (_, r1), (_, r2) = diff
                c = diff[0][0]
                assert sorted([choice[c][r1], choice[c][r2]])[0] == -1
                assert sorted([n[c][r1], n[c][r2]])[0] == -1
        assert moves.mutate(choice) in neighbours


def test_nb201_neighbours_are_every_single_op_change():
    sp = space("nb201")
    moves = Moves(sp, torch.Generator().manual_seed(1))
    choice = moves.random()
    assert len(moves.neighbours(choice)) == len(sp.edges) * (len(sp.ops) - 1)  # 6 x 4


def test_the_evaluator_spends_the_budget_once_per_architecture_and_traces_the_best():
    sp = space("nb201")
    moves = Moves(sp, torch.Generator().manual_seed(0))
    calls = []

    def evaluate(g):
        calls.append(str(g))
        return math.nan if len(calls) == 2 else conv_count(g)

    ev = Evaluator(moves, evaluate, budget=4)
    first = moves.random()
    assert ev(first) == ev(first)  # cached: one call
    others = [moves.mutate(first)]
    while len(others) < 4:
        n = moves.mutate(others[-1])
        if n != first and n not in others:
            others.append(n)
    for c in others[:3]:
        ev(c)
    with pytest.raises(Budget):
        ev(others[3])
    assert len(calls) == 4 and ev.trace.archs == calls
    scores = ev.trace.scores
    assert math.isnan(scores[1])  # recorded as such, never the best
    finite = [s for s in scores if math.isfinite(s)]
    assert ev.trace.best_score == max(finite)
    assert ev.trace.best_so_far == [
        max([s for s in scores[: i + 1] if math.isfinite(s)]) for i in range(4)
    ]


@pytest.mark.parametrize("method", ["evolution", "local_search"])
def test_methods_find_the_optimum_of_a_known_objective(method):
    trace = build_method(method).run(space("nb201"), conv_count, budget=300, seed=0)
    assert trace.best_score == 6.0
    assert trace.best_arch.count("nor_conv_3x3") == 6
    assert len(trace.scores) <= 300
    assert all(b2 >= b1 for b1, b2 in zip(trace.best_so_far, trace.best_so_far[1:]))


def test_same_seed_same_trace_and_random_search_is_the_baseline():
    a = build_method("evolution").run(space("nb201"), conv_count, budget=60, seed=3)
    b = build_method("evolution").run(space("nb201"), conv_count, budget=60, seed=3)
    assert a.archs == b.archs
    rs = build_method("random").run(space("nb201"), conv_count, budget=60, seed=3)
    assert len(set(rs.archs)) == 60  # distinct architectures, each evaluated once


def test_unknown_method_and_bad_options_name_the_key():
    with pytest.raises(ValueError, match=r"estimate.search: unknown .*evolution"):
        build_method("evolutionary")
    with pytest.raises(ValueError, match="estimate.population=1"):
        build_method("evolution", population=1)
    assert {"random", "evolution", "local_search"} <= set(METHODS)
