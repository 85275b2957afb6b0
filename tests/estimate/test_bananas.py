"""BANANAS (``nas.estimate.black_box.bananas``): it finds the optimum of a known objective on
NB201, spends the budget exactly on distinct valid architectures, is deterministic for a seed,
falls back to the onehot encoding where a space has no paths, and refuses bad options by key.

The runs evaluate 2 to 10 architectures per iteration (the paper's experiments use 10) rather
than Algorithm 1's one: fewer ensemble fits, so the file runs in a few seconds."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from nas.estimate.black_box import METHODS, build_method
from nas.estimate.black_box.bananas import Bananas, MetaNet
from supernet.spaces import build_space


def space(name: str):
    return build_space(name, [3, 32, 32], 10)


NB201 = space("nb201")
OP_WEIGHT = {op: 0.01 * k for k, op in enumerate(NB201.ops)}  # breaks ties below the optimum
OPTIMUM = 6 * (1 + OP_WEIGHT["nor_conv_3x3"])  # all six edges nor_conv_3x3: the only maximum


def objective(genotype) -> float:
    """How many edges are 3x3 convolutions, plus a small weight per op."""
    return float(
        sum((op == "nor_conv_3x3") + OP_WEIGHT[op] for op, _, _ in genotype.kept_edges()["cell"])
    )


@pytest.fixture(scope="module")
def run60():
    # onehot: the objective is a sum over edges, linear in the onehot encoding; the path encoding
    # cannot see an edge that lies on no input -> output path (the behaviour test below runs it).
    method = build_method("bananas", encoding="onehot", batch=5)
    return method.run(NB201, objective, budget=60, seed=0)


def test_bananas_reaches_the_optimum_within_60_evaluations(run60):
    assert math.isclose(run60.best_score, OPTIMUM)
    assert run60.best_arch.count("nor_conv_3x3") == 6
    assert len(run60.scores) == 60


def test_the_trace_is_exact_distinct_and_monotone(run60):
    best = run60.best_so_far
    assert all(b2 >= b1 for b1, b2 in zip(best, best[1:]))
    assert best == [max(run60.scores[: i + 1]) for i in range(len(run60.scores))]
    assert len(set(run60.archs)) == len(run60.archs)  # each architecture evaluated once


def test_every_evaluated_architecture_is_valid_and_the_budget_is_never_exceeded():
    evaluated = []

    def record(genotype) -> float:
        NB201.validate_genotype(genotype)
        evaluated.append(genotype)
        return objective(genotype)

    for budget in (3, 17):  # inside the initial design, and mid-iteration
        evaluated.clear()
        trace = build_method("bananas", batch=4).run(NB201, record, budget=budget, seed=1)
        assert len(evaluated) == len(trace.scores) == budget
        assert len({str(g) for g in evaluated}) == budget


def test_same_seed_same_trace_another_seed_another():
    def run(seed):
        return build_method("bananas", batch=5).run(NB201, objective, budget=15, seed=seed)

    a, b, c = run(3), run(3), run(4)
    assert a.archs == b.archs and a.scores == b.scores
    assert a.archs != c.archs


def test_auto_falls_back_to_onehot_on_a_space_without_paths():
    mbconv = space("mbconv")
    assert Bananas().encoding_for(mbconv) == "onehot"
    assert Bananas().encoding_for(NB201) == "path"

    def small_kernels(genotype) -> float:
        return float(sum(op.startswith("k3") for op, _, _ in genotype.kept_edges()["layers"]))

    trace = build_method("bananas", batch=5).run(mbconv, small_kernels, budget=15, seed=0)
    assert len(set(trace.archs)) == len(trace.archs) == 15
    with pytest.raises(ValueError, match=r"estimate.encoding='path'.*mbconv"):
        build_method("bananas", encoding="path").run(mbconv, small_kernels, budget=15, seed=0)


def test_bad_options_are_refused_naming_the_key():
    assert "bananas" in METHODS
    with pytest.raises(ValueError, match=r"estimate.acquisition='ei'.*its, ucb"):
        build_method("bananas", acquisition="ei")
    with pytest.raises(ValueError, match=r"estimate.encoding='adjacency'.*auto.*onehot.*path"):
        build_method("bananas", encoding="adjacency")
    with pytest.raises(ValueError, match=r"estimate.surrogate='xgb'.*metann.*gp"):
        build_method("bananas", surrogate="xgb")
    with pytest.raises(ValueError, match=r"estimate.num_init=True .*estimate.batch=0 "):
        build_method("bananas", batch=0, num_init=True)


def test_ucb_and_a_scikit_learn_ensemble_run():
    trace = build_method("bananas", acquisition="ucb", surrogate="mlp", batch=2).run(
        NB201, objective, budget=12, seed=0
    )
    assert len(set(trace.archs)) == 12


def test_the_meta_networks_hand_written_gradient_is_autograds():
    net = MetaNet(members=3, layers=3, width=5, seed=0)
    net.init(7)
    x, target = torch.rand(3, 6, 7), torch.randn(3, 6)
    grad = torch.zeros_like(net.flat)
    loss = net.gradient(x, target, net.views(grad))
    flat = net.flat.clone().requires_grad_()
    net.params = net.views(flat)
    reference = (net.forward(x)[-1].squeeze(-1) - target).abs().mean(dim=1).sum()
    reference.backward()
    assert math.isclose(loss, reference.item(), rel_tol=1e-6)
    torch.testing.assert_close(grad, flat.grad)


def test_the_meta_network_ensemble_learns_and_spreads():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(50, 12)).astype(float)
    y = X @ rng.normal(size=12)
    pred = MetaNet(members=3, seed=0).fit(X[:30], y[:30]).predict(X[30:])
    assert pred.shape == (3, 20)
    assert np.corrcoef(pred.mean(axis=0), y[30:])[0, 1] > 0.8
    assert pred.std(axis=0).mean() > 0  # members differ: the acquisition has a spread


def test_bananas_median_best_after_30_is_at_least_random_searchs():
    # the default encoding (path on NB201), the paper's 10 architectures per iteration; at 30
    # evaluations random search's median best has 3 of the 6 convolutions, BANANAS' 5
    def median_best(method, **options):
        return statistics.median(
            build_method(method, **options).run(NB201, objective, budget=30, seed=s).best_score
            for s in range(3)
        )

    assert median_best("bananas", batch=10) >= median_best("random")
