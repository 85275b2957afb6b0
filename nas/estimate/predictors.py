"""Learned performance predictors: a regressor from architecture encodings
(``nas.estimate.encodings``), optionally with extra feature columns such as zero-cost proxy
scores, to accuracy (White et al., "How Powerful are Performance Predictors in Neural
Architecture Search?", NeurIPS 2021, compare these families).

Built in (scikit-learn, each seeded): ``rf`` (random forest, 200 trees), ``gb`` (gradient
boosting, 200 depth-3 trees, learning rate 0.05, subsample 0.8), ``gp`` (Gaussian process:
constant × Matérn-5/2 + white noise, its hyperparameters fitted by marginal likelihood,
normalised targets), ``mlp`` (two hidden layers of 64, L2 1e-3, Adam). ``Predictor``
standardises the targets and the extra columns with the training set's mean and std (the
encodings' 0/1 columns are left as they are) and undoes the targets' scaling in ``predict``.
``cross_validate`` reports Spearman's ρ and Kendall's τ between predictions and targets on
each held-out fold of a seeded shuffled K-fold split, and their means.

A new predictor is a factory ``seed -> regressor`` (anything with ``fit`` / ``predict``),
registered with ``register_predictor``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPRegressor

from nas.core.registry import Registry

PredictorFactory = Callable[[int], Any]  # seed -> an unfitted regressor (fit / predict)

PREDICTORS: Registry[PredictorFactory] = Registry("predictor", "predictor")


def register_predictor(name: str, factory: PredictorFactory) -> PredictorFactory:
    """Makes ``Predictor(name)`` build its regressor with ``factory(seed)``; returns it."""
    if not callable(factory):
        raise TypeError(f"register_predictor({name!r}, {factory!r}): not callable.")
    return PREDICTORS.add(name, factory)


def _random_forest(seed: int) -> RandomForestRegressor:
    return RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)


def _gradient_boosting(seed: int) -> GradientBoostingRegressor:
    return GradientBoostingRegressor(
        n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=seed
    )


def _gaussian_process(seed: int) -> GaussianProcessRegressor:
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        length_scale=3.0, length_scale_bounds=(1e-2, 1e3), nu=2.5
    ) + WhiteKernel(noise_level=0.1, noise_level_bounds=(1e-6, 1e1))
    return GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed)


def _mlp(seed: int) -> MLPRegressor:
    return MLPRegressor(
        hidden_layer_sizes=(64, 64),
        alpha=1e-3,
        learning_rate_init=1e-3,
        max_iter=500,
        random_state=seed,
    )


register_predictor("rf", _random_forest)
register_predictor("gb", _gradient_boosting)
register_predictor("gp", _gaussian_process)
register_predictor("mlp", _mlp)


def _matrix(X: Any, what: str, n: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1 and what != "X":
        X = X[:, None]  # one extra column
    if X.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [architectures, features], got {X.shape}.")
    if n is not None and len(X) != n:
        raise ValueError(f"{what} has {len(X)} rows; the encodings have {n}.")
    bad = ~np.isfinite(X)
    if bad.any():
        cols = sorted(set(np.nonzero(bad)[1].tolist()))
        raise ValueError(
            f"{what} has {int(bad.sum())} non-finite values (nan/inf) in columns {cols}; drop "
            "or impute those rows first (a predictor cannot rank them)."
        )
    return X


class Predictor:
    """The regressor ``name`` (``PREDICTORS``) on encodings ``X`` and optional ``extra``
    columns (standardised), trained on standardised targets."""

    def __init__(self, name: str = "rf", seed: int = 0):
        self.name, self.seed = name, seed
        self.model = PREDICTORS.lookup(name)(seed)
        self.extra_mean: np.ndarray | None = None
        self.extra_std: np.ndarray | None = None
        self.y_mean, self.y_std = 0.0, 1.0

    def _features(self, X: Any, extra: Any | None) -> np.ndarray:
        X = _matrix(X, "X")
        fitted_extra = self.extra_mean is not None
        if (extra is not None) != fitted_extra:
            raise ValueError(
                f"The predictor was fitted {'with' if fitted_extra else 'without'} extra "
                f"feature columns; predict {'needs' if fitted_extra else 'takes no'} extra."
            )
        if extra is None:
            return X
        extra = _matrix(extra, "extra", len(X))
        if extra.shape[1] != len(self.extra_mean):
            raise ValueError(
                f"extra has {extra.shape[1]} columns; the predictor was fitted with "
                f"{len(self.extra_mean)}."
            )
        return np.hstack([X, (extra - self.extra_mean) / self.extra_std])

    def fit(self, X: Any, y: Any, extra: Any | None = None) -> Predictor:
        """Fits on encodings ``X`` ``[n, d]``, targets ``y`` ``[n]`` and optional extra
        columns ``[n, e]`` (e.g. proxy scores); returns itself."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        X = _matrix(X, "X")
        if len(y) != len(X) or not np.isfinite(y).all():
            raise ValueError(
                f"y must hold one finite target per row of X ({len(X)}), got {len(y)} values "
                f"({int((~np.isfinite(y)).sum())} non-finite)."
            )
        if len(y) < 2:
            raise ValueError(f"A predictor needs at least 2 architectures to fit, got {len(y)}.")
        if extra is not None:
            extra = _matrix(extra, "extra", len(X))
            std = extra.std(axis=0)
            self.extra_mean, self.extra_std = extra.mean(axis=0), np.where(std > 0, std, 1.0)
        else:
            self.extra_mean = self.extra_std = None
        std = float(y.std())
        self.y_mean, self.y_std = float(y.mean()), std if std > 0 else 1.0
        self.model.fit(self._features(X, extra), (y - self.y_mean) / self.y_std)
        return self

    def predict(self, X: Any, extra: Any | None = None) -> np.ndarray:
        """Predicted targets ``[n]`` (in the units of the fitted ``y``)."""
        pred = np.asarray(self.model.predict(self._features(X, extra)), dtype=np.float64)
        return pred.reshape(-1) * self.y_std + self.y_mean


def rank_correlations(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Spearman's ρ, Kendall's τ-b); nan where either side is constant or n < 2."""
    if len(y) < 2 or np.ptp(pred) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    return float(stats.spearmanr(pred, y).statistic), float(stats.kendalltau(pred, y).statistic)


def cross_validate(
    predictor_name: str,
    X: Any,
    y: Any,
    folds: int = 5,
    seed: int = 0,
    extra: Any | None = None,
) -> dict[str, Any]:
    """K-fold cross-validation of predictor ``predictor_name`` (shuffled split seeded by
    ``seed``, which also seeds the predictor): ``{"predictor", "n", "spearman", "kendall"
    (means over folds), "folds": [{"fold", "n_train", "n_test", "spearman", "kendall"}, ...]}``.
    Deterministic for a given seed."""
    PREDICTORS.lookup(predictor_name)  # an unknown name fails before any work
    X = _matrix(X, "X")
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    extra = None if extra is None else _matrix(extra, "extra", len(X))
    if len(y) != len(X):
        raise ValueError(f"y has {len(y)} values; X has {len(X)} rows.")
    if not 2 <= folds <= len(y) // 2:
        raise ValueError(
            f"folds={folds}: need 2 <= folds <= n/2 = {len(y) // 2} (at least 2 architectures "
            f"per held-out fold; n = {len(y)})."
        )
    out_folds = []
    splits = KFold(n_splits=folds, shuffle=True, random_state=seed).split(X)
    for k, (train, test) in enumerate(splits):
        model = Predictor(predictor_name, seed=seed).fit(
            X[train], y[train], None if extra is None else extra[train]
        )
        pred = model.predict(X[test], None if extra is None else extra[test])
        rho, tau = rank_correlations(pred, y[test])
        out_folds.append(
            {"fold": k, "n_train": len(train), "n_test": len(test), "spearman": rho, "kendall": tau}
        )
    return {
        "predictor": predictor_name,
        "n": len(y),
        "spearman": float(np.mean([f["spearman"] for f in out_folds])),
        "kendall": float(np.mean([f["kendall"] for f in out_folds])),
        "folds": out_folds,
    }
