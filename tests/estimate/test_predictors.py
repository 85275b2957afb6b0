"""Learned predictors (nas/estimate/predictors.py): on a synthetic accuracy over random NB201
genotypes the tree ensembles rank held-out architectures well and a shuffled-label control
does not; GP and MLP run; cross-validation is deterministic; extra columns are standardised."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from nas.core.genotype import NB201Genotype
from nas.estimate.encodings import encode
from nas.estimate.predictors import PREDICTORS, Predictor, cross_validate
from supernet.spaces import build_space


def random_nb201(n: int, seed: int) -> list[NB201Genotype]:
    """``n`` NB201 genotypes, each edge's op drawn uniformly."""
    rng = np.random.default_rng(seed)
    ops = build_space("nb201", (3, 32, 32), 10).ops
    return [
        NB201Genotype(
            nodes=[[(ops[rng.integers(len(ops))], i) for i in range(j)] for j in (1, 2, 3)]
        )
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def synthetic():
    """Onehot encodings of 200 random genotypes; accuracy = a weighted sum of the op
    indicators + noise (noise sd a quarter of the signal's)."""
    space = build_space("nb201", (3, 32, 32), 10)
    X = encode(space, random_nb201(200, seed=0), "onehot")
    rng = np.random.default_rng(1)
    signal = X @ rng.normal(size=X.shape[1])
    y = 90 + signal + 0.25 * signal.std() * rng.normal(size=len(X))
    return X, y


@pytest.mark.parametrize("name", ["rf", "gb"])
def test_tree_ensembles_rank_held_out_architectures(synthetic, name):
    X, y = synthetic
    result = cross_validate(name, X, y, folds=5, seed=0)
    assert result["predictor"] == name and result["n"] == 200
    assert result["spearman"] > 0.8 and result["kendall"] > 0.6
    assert len(result["folds"]) == 5
    assert sum(f["n_test"] for f in result["folds"]) == 200
    assert all(f["n_train"] + f["n_test"] == 200 for f in result["folds"])
    # The mean is the mean of the folds' values.
    assert result["spearman"] == pytest.approx(np.mean([f["spearman"] for f in result["folds"]]))
    assert result["kendall"] == pytest.approx(np.mean([f["kendall"] for f in result["folds"]]))
    # Shuffled labels: nothing to learn, ρ near 0.
    control = cross_validate(name, X, np.random.default_rng(2).permutation(y), folds=5, seed=0)
    assert abs(control["spearman"]) < 0.2


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", ["gp", "mlp"])
def test_gp_and_mlp_run_and_return_finite_numbers(synthetic, name):
    X, y = synthetic
    result = cross_validate(name, X[:100], y[:100], folds=3, seed=0)
    values = [result["spearman"], result["kendall"]]
    values += [f[k] for f in result["folds"] for k in ("spearman", "kendall")]
    assert np.isfinite(values).all()
    assert result["spearman"] > 0.5  # the target is learnable; far above chance
    pred = Predictor(name, seed=0).fit(X[:100], y[:100]).predict(X[100:])
    assert pred.shape == (100,) and np.isfinite(pred).all()


def test_cross_validation_is_deterministic_with_a_seed(synthetic):
    X, y = synthetic
    a = cross_validate("gb", X[:80], y[:80], folds=4, seed=3)
    b = cross_validate("gb", X[:80], y[:80], folds=4, seed=3)
    assert a == b
    c = cross_validate("gb", X[:80], y[:80], folds=4, seed=4)
    assert [f["spearman"] for f in c["folds"]] != [f["spearman"] for f in a["folds"]]


def test_fold_values_are_the_rank_correlations_of_held_out_predictions(synthetic):
    """A fold's ρ/τ are scipy's on that fold's held-out predictions of a model fitted on the
    rest (the split: sklearn's shuffled KFold with the seed)."""
    from sklearn.model_selection import KFold

    X, y = synthetic
    result = cross_validate("rf", X[:60], y[:60], folds=3, seed=5)
    train, test = next(KFold(3, shuffle=True, random_state=5).split(X[:60]))
    pred = Predictor("rf", seed=5).fit(X[train], y[train]).predict(X[test])
    assert result["folds"][0]["spearman"] == pytest.approx(stats.spearmanr(pred, y[test])[0])
    assert result["folds"][0]["kendall"] == pytest.approx(stats.kendalltau(pred, y[test])[0])


def test_extra_columns_are_standardised_and_used():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(120, 10)).astype(float)  # encodings unrelated to y
    y = rng.normal(size=120)
    score = 1e6 * (y + 0.1 * rng.normal(size=120)) + 5e7  # a proxy score on a huge scale
    model = Predictor("gb", seed=0).fit(X[:80], y[:80], extra=score[:80])
    np.testing.assert_allclose(model.extra_mean, [score[:80].mean()])
    np.testing.assert_allclose(model.extra_std, [score[:80].std()])
    pred = model.predict(X[80:], extra=score[80:])
    assert stats.spearmanr(pred, y[80:])[0] > 0.8
    assert cross_validate("rf", X, y, extra=score, seed=0)["spearman"] > 0.8
    assert abs(cross_validate("rf", X, y, seed=0)["spearman"]) < 0.3  # without it: noise
    with pytest.raises(ValueError, match="fitted with extra feature columns"):
        model.predict(X[80:])
    with pytest.raises(ValueError, match="non-finite values"):
        Predictor("rf").fit(X[:3], y[:3], extra=[1.0, np.inf, 2.0])


def test_unknown_predictor_and_bad_input_are_refused(synthetic):
    X, y = synthetic
    assert sorted(PREDICTORS) == ["gb", "gp", "mlp", "rf"]
    with pytest.raises(ValueError, match=r"predictor: unknown predictor 'xgb'.*gb, gp, mlp, rf"):
        cross_validate("xgb", X, y)
    with pytest.raises(ValueError, match="unknown predictor 'svr'"):
        Predictor("svr")
    with pytest.raises(ValueError, match="folds=1"):
        cross_validate("rf", X, y, folds=1)
    with pytest.raises(ValueError, match="y has 199 values"):
        cross_validate("rf", X, y[:-1])
    with pytest.raises(ValueError, match="one finite target per row"):
        Predictor("rf").fit(X[:3], [1.0, np.nan, 2.0])
