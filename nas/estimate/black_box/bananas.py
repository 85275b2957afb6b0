"""BANANAS (White, Neiswanger & Savani, "BANANAS: Bayesian Optimization with Neural
Architectures for Neural Architecture Search", AAAI 2021, Algorithm 1): Bayesian optimisation
whose model is an ensemble of neural networks on the path encoding.

1. Evaluate ``num_init`` uniformly random architectures (paper: 10).
2. Each iteration, until the budget is spent:

   - fit an ensemble of ``ensemble`` predictors (paper: 5) on the encodings of every
     architecture evaluated so far (non-finite scores left out; with fewer than 2 finite
     ones the candidates are taken in a random order) and their scores;
   - build ``candidates`` new architectures (paper: 100) by mutating the best evaluated ones:
     the best architecture's mutations first (its ``Moves.neighbours``, one op or one input
     changed, in a random order), then the next best's, over the top ``num_parents`` (the
     released code's 1 architecture to mutate × patience factor 5 = 5), until there are
     ``candidates`` distinct, not yet evaluated ones. (The released code mutates each NB201 op
     with probability 1/4 instead, so a candidate may be several ops away.) ``random_candidates``
     uniformly random new architectures are added (0 by default, the released code's
     ``mutation`` acquisition optimiser; its ``mutation_random`` adds random ones). Where the
     mutations give fewer than ``batch`` new architectures (the top architectures'
     neighbourhoods are spent), random ones fill the pool up to ``candidates``;
   - score each candidate with the acquisition ``acquisition`` from the ensemble's mean and
     standard deviation (``numpy.std``, over members): ``its`` (the paper's default,
     independent Thompson sampling: one draw from N(mean, std) per candidate) or ``ucb``
     (mean + 0.5 · std, the released code's explore factor);
   - evaluate the ``batch`` best-scored candidates. Algorithm 1 evaluates one per iteration
     (``batch=1``, the default); the paper's experiments and released code run k = 10 per
     iteration (``batch=10``: ten times fewer ensemble fits for the same budget).

The surrogate model (``surrogate``): ``metann`` (default), the paper's meta neural network: a
fully connected ReLU network of 10 hidden layers of 20 units, mean absolute error on the
standardised scores, Adam (learning rate 0.01, β = (0.9, 0.99)), batch size 32, 150 epochs
(``epochs``), Glorot-uniform weights and zero biases (Keras' defaults), members differing in
their initialisation and batch order (the released code's NB101 / NB201 settings). The
members are trained at once as one batched network (``MetaNet``): about 0.15 s per ensemble
fit on 10 architectures and 0.6 s on 100 on one busy CPU core, so a ``batch=1`` run of 60
evaluations on NB201 takes about 8 s of fitting. Any ``nas.estimate.predictors`` name (``mlp``,
``rf``, ``gb``, ``gp``) instead fits ``ensemble`` copies of that predictor with different
seeds; a deterministic one (``gp``) gives a zero spread, so the acquisition ranks by the mean.

The encoding (``encoding``): ``auto`` (default) takes ``path`` (the paper's) where the space is
a cell space and ``onehot`` where it has no path encoding (a chain such as mbconv); any
registered encoding name may be given (the key ``estimate.encoding`` is also the truth
predictor's, whose default is ``onehot``). ``nas.estimate.encodings``' path encoding leaves out
paths through ``none`` (the encodings study's definition), so an edge that lies on no
input → output path is invisible to it: on an objective that counts such edges (a sum over
edges), ``onehot`` learns faster. Everything random draws from ``Moves.generator`` (numpy and
torch generators seeded from it), so a seed gives one trace.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from nas.estimate.black_box.base import (
    BlackBoxSearch,
    Choice,
    Evaluator,
    Moves,
    rank_key,
    register_method,
)
from nas.estimate.encodings import ENCODINGS, encode, feature_names, resolve_encoding
from nas.estimate.predictors import PREDICTORS, Predictor
from supernet.spaces.base import SearchSpace

METANN = "metann"
ACQUISITIONS = ("its", "ucb")
UCB_FACTOR = 0.5  # the released code's explore factor
RANDOM_MISSES = 1000  # random draws that may hit evaluated architectures before giving up


@contextmanager
def _one_thread() -> Iterator[None]:
    """Runs the block on one intra-op thread: the networks are far too small to gain from more,
    and on a shared CPU extra threads only wait for each other (10x slower measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class MetaNet:
    """An ensemble of ``members`` fully connected ReLU networks (``layers`` hidden layers of
    ``width`` units, one output) trained at once on standardised targets with the mean
    absolute error and Adam; member ``m`` has its own initialisation and batch order.

    The networks are small enough that per-op overhead is the cost, so the training is
    written out: the members' weights are views of one flat vector, ``gradient`` back-propagates
    by hand (checked against autograd in the tests) and Adam (``torch.optim.Adam``'s update,
    ε = 1e-8) updates the flat vector in place: a third of the time of autograd with
    ``torch.optim``, which also imports ``torch._dynamo`` (seconds) on first use."""

    def __init__(
        self,
        members: int = 5,
        layers: int = 10,
        width: int = 20,
        epochs: int = 150,
        batch_size: int = 32,
        lr: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.99),
        seed: int = 0,
    ):
        self.members, self.layers, self.width = members, layers, width
        self.epochs, self.batch_size, self.lr, self.betas = epochs, batch_size, lr, betas
        self.generator = torch.Generator().manual_seed(seed)
        self.shapes: list[tuple[int, int, int]] = []
        self.flat = torch.zeros(0)
        self.params: list[torch.Tensor] = []  # views of ``flat``: weight, bias, weight, ...
        self.y_mean, self.y_std = 0.0, 1.0

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        sizes = [math.prod(shape) for shape in self.shapes]
        return [p.view(shape) for p, shape in zip(torch.split(flat, sizes), self.shapes)]

    def init(self, n_features: int, width: int | None = None) -> None:
        """Glorot-uniform weights and zero biases (Keras' defaults) for ``n_features`` inputs
        of an encoding ``width`` wide (default ``n_features``; the first layer's Glorot scale
        uses it where the caller left out columns that are zero in every row)."""
        dims = [n_features, *[self.width] * self.layers, 1]
        m, parts = self.members, []
        self.shapes = []
        for k, (fan_in, fan_out) in enumerate(zip(dims, dims[1:])):
            fan = width if k == 0 and width is not None else fan_in
            limit = math.sqrt(6.0 / (fan + fan_out))
            parts += [(torch.rand(m * fan_in * fan_out, generator=self.generator) * 2 - 1) * limit]
            parts += [torch.zeros(m * fan_out)]
            self.shapes += [(m, fan_in, fan_out), (m, 1, fan_out)]
        self.flat = torch.cat(parts)
        self.params = self.views(self.flat)

    def forward(self, h: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output for input ``[members, n, d]`` (the last: ``[members, n, 1]``)."""
        outs, last = [h], len(self.params) - 2
        for i in range(0, len(self.params), 2):
            h = torch.baddbmm(self.params[i + 1], h, self.params[i])
            if i < last:
                h = h.relu_()
            outs.append(h)
        return outs

    def gradient(self, x: torch.Tensor, target: torch.Tensor, grads: list[torch.Tensor]) -> float:
        """Writes into ``grads`` (views like ``params``) the gradient of the loss: the sum over
        members of each member's mean absolute error on its batch ``x`` ``[members, b, d]``,
        ``target`` ``[members, b]``; returns the loss."""
        outs = self.forward(x)
        error = outs[-1].squeeze(-1) - target
        g = (torch.sign(error) / x.shape[1]).unsqueeze(-1)
        for layer in range(len(self.params) // 2 - 1, -1, -1):
            h = outs[layer]
            torch.bmm(h.transpose(1, 2), g, out=grads[2 * layer])
            torch.sum(g, dim=1, keepdim=True, out=grads[2 * layer + 1])
            if layer:
                g = torch.bmm(g, self.params[2 * layer].transpose(1, 2)).mul_(h > 0)
        return float(error.abs().mean(dim=1).sum())

    def fit(self, X: np.ndarray, y: np.ndarray, width: int | None = None) -> MetaNet:
        """Fits on ``X`` ``[n, d]``, ``y`` ``[n]``; ``width``: see ``init``."""
        x = torch.as_tensor(X, dtype=torch.float32)
        y = np.asarray(y, dtype=np.float64)
        std = float(y.std())
        self.y_mean, self.y_std = float(y.mean()), std if std > 0 else 1.0
        target = torch.as_tensor((y - self.y_mean) / self.y_std, dtype=torch.float32)
        self.init(x.shape[1], width)
        flat = self.flat
        grad = torch.zeros_like(flat)
        grads = self.views(grad)
        exp_avg, exp_avg_sq = torch.zeros_like(flat), torch.zeros_like(flat)
        beta1, beta2 = self.betas
        n, step = len(x), 0
        with torch.no_grad(), _one_thread():
            for _ in range(self.epochs):
                order = torch.argsort(torch.rand(self.members, n, generator=self.generator), 1)
                for start in range(0, n, self.batch_size):
                    idx = order[:, start : start + self.batch_size]  # [members, b]
                    self.gradient(x[idx], target[idx], grads)
                    step += 1
                    exp_avg.lerp_(grad, 1 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(1e-8)
                    flat.addcdiv_(exp_avg, denom, value=-self.lr / (1 - beta1**step))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``[members, n]`` predicted targets (in the units of the fitted ``y``)."""
        x = torch.as_tensor(X, dtype=torch.float32)
        with torch.no_grad(), _one_thread():
            out = self.forward(x.expand(self.members, *x.shape).contiguous())[-1]
        return out.squeeze(-1).double().numpy() * self.y_std + self.y_mean


def _is_count(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


class Bananas(BlackBoxSearch):
    def __init__(
        self,
        num_init: int = 10,
        ensemble: int = 5,
        candidates: int = 100,
        num_parents: int = 5,
        random_candidates: int = 0,
        acquisition: str = "its",
        batch: int = 1,
        encoding: str = "auto",
        surrogate: str = METANN,
        epochs: int = 150,
    ):
        counts = {
            "num_init": (num_init, 1),
            "ensemble": (ensemble, 1),
            "candidates": (candidates, 1),
            "num_parents": (num_parents, 1),
            "random_candidates": (random_candidates, 0),
            "batch": (batch, 1),
            "epochs": (epochs, 1),
        }
        problems = [
            f"estimate.{key}={value!r} must be an integer >= {least}."
            for key, (value, least) in counts.items()
            if not _is_count(value, least)
        ]
        if acquisition not in ACQUISITIONS:
            problems.append(
                f"estimate.acquisition={acquisition!r} is not one of {', '.join(ACQUISITIONS)} "
                "(its: independent Thompson sampling; ucb: mean + 0.5 std)."
            )
        if encoding != "auto" and encoding not in ENCODINGS:
            problems.append(
                f"estimate.encoding={encoding!r} is not one of auto, "
                f"{', '.join(sorted(ENCODINGS))}."
            )
        if surrogate != METANN and surrogate not in PREDICTORS:
            problems.append(
                f"estimate.surrogate={surrogate!r} is not one of {METANN}, "
                f"{', '.join(sorted(PREDICTORS))}."
            )
        if problems:
            raise ValueError(f"BANANAS options: {' '.join(problems)}")
        super().__init__(
            num_init=num_init,
            ensemble=ensemble,
            candidates=candidates,
            num_parents=num_parents,
            random_candidates=random_candidates,
            acquisition=acquisition,
            batch=batch,
            encoding=encoding,
            surrogate=surrogate,
            epochs=epochs,
        )
        self.num_init, self.ensemble, self.candidates = num_init, ensemble, candidates
        self.num_parents, self.random_candidates = num_parents, random_candidates
        self.acquisition, self.batch, self.encoding = acquisition, batch, encoding
        self.surrogate, self.epochs = surrogate, epochs

    def encoding_for(self, space: SearchSpace) -> str:
        """The encoding this search uses on ``space`` (``auto``: path where it applies)."""
        if self.encoding == "auto":
            return resolve_encoding(space, "auto")
        try:
            feature_names(space, self.encoding)
        except ValueError as e:
            raise ValueError(
                f"estimate.encoding={self.encoding!r} does not apply to search_space="
                f"{space.name}: {e} (estimate.encoding=auto picks one that does.)"
            ) from e
        return self.encoding

    def search(self, moves: Moves, evaluator: Evaluator) -> None:
        encoding = self.encoding_for(moves.space)
        seed = int(torch.randint(2**31 - 1, (1,), generator=moves.generator))
        rng = np.random.default_rng(seed)
        vectors: dict[Choice, np.ndarray] = {}

        def features(choices: list[Choice]) -> np.ndarray:
            new = [c for c in choices if c not in vectors]
            if new:
                rows = encode(moves.space, [moves.genotype(c) for c in new], encoding)
                vectors.update(zip(new, rows))
            return np.stack([vectors[c] for c in choices])

        for choice in self._random_new(moves, set(evaluator.cache), self.num_init):
            evaluator(choice)
        while True:
            pool = self._pool(moves, evaluator)
            if not pool:
                return  # every architecture of the space is evaluated
            order = self._acquire(pool, features, evaluator, rng)
            for i in order[: self.batch]:
                evaluator(pool[i])

    def _random_new(self, moves: Moves, seen: set[Choice], count: int) -> list[Choice]:
        """Up to ``count`` distinct random architectures not in ``seen`` (which grows)."""
        out: list[Choice] = []
        misses = 0
        while len(out) < count and misses <= RANDOM_MISSES:
            choice = moves.random()
            if choice in seen:
                misses += 1
                continue
            seen.add(choice)
            out.append(choice)
        return out

    def _pool(self, moves: Moves, evaluator: Evaluator) -> list[Choice]:
        """The candidates: mutations of the best evaluated architectures, then random ones."""
        scores = evaluator.cache
        ranked = sorted(scores, key=lambda c: rank_key(scores[c]), reverse=True)
        seen = set(scores)
        pool: list[Choice] = []
        for parent in ranked[: self.num_parents]:
            options = moves.neighbours(parent)
            for i in torch.randperm(len(options), generator=moves.generator).tolist():
                if len(pool) >= self.candidates:
                    break
                if options[i] not in seen:
                    seen.add(options[i])
                    pool.append(options[i])
            if len(pool) >= self.candidates:
                break
        extra = self.random_candidates
        if len(pool) < self.batch:
            extra = max(extra, self.candidates - len(pool))
        return pool + self._random_new(moves, seen, extra)

    def _fit_predict(self, X: np.ndarray, y: np.ndarray, Xc: np.ndarray, seed: int) -> np.ndarray:
        """``[ensemble, len(Xc)]`` predictions of the ensemble fitted on ``X``, ``y``."""
        if self.surrogate == METANN:
            # A column zero for every architecture here (most of the path encoding: paths no
            # architecture has) changes no prediction and its weights get no gradient: left
            # out, with the first layer's initial scale that of the full width.
            used = (X != 0).any(axis=0) | (Xc != 0).any(axis=0)
            net = MetaNet(members=self.ensemble, epochs=self.epochs, seed=seed)
            return net.fit(X[:, used], y, width=X.shape[1]).predict(Xc[:, used])
        seeds = np.random.default_rng(seed).integers(2**31 - 1, size=self.ensemble)
        return np.stack(
            [Predictor(self.surrogate, seed=int(s)).fit(X, y).predict(Xc) for s in seeds]
        )

    def _acquire(self, pool, features, evaluator: Evaluator, rng: np.random.Generator):
        """Indices of ``pool``, best acquisition value first."""
        seed = int(rng.integers(2**31 - 1))
        train = [c for c, s in evaluator.cache.items() if math.isfinite(s)]
        if len(train) < 2:  # nothing to fit yet: a random order
            return rng.permutation(len(pool)).tolist()
        y = np.array([evaluator.cache[c] for c in train])
        preds = self._fit_predict(features(train), y, features(pool), seed)
        mean, std = preds.mean(axis=0), preds.std(axis=0)
        if self.acquisition == "its":
            value = rng.normal(mean, std)
        else:
            value = mean + UCB_FACTOR * std
        return np.argsort(-value, kind="stable").tolist()


register_method("bananas", Bananas)
