"""``stage=estimate`` against ground truth: the proxies' rank correlations and a predictor.

``estimate.truth``: a CSV of architectures and their accuracy (an ``arch`` or ``genotype``
column: the table ``nas.report.collect`` writes for a multirun of retrains, or any CSV) or a
NAS-Bench-201 file. With it, every column of ``estimates.csv`` is correlated with the truth
(``nas.estimate.correlate``: ``correlations.json``/``.csv`` and a scatter plot per column).

``estimate.predictor`` (rf, gb, gp, mlp): trained on the truth CSV's architectures, or on
``estimate.predictor_train`` random cells looked up in a NAS-Bench-201 file (``estimate.encoding``
of each, and optionally proxy scores), reported by cross-validated ρ / τ, then used to predict every
estimated architecture (``predictions.csv``, best first): the predictor half of a funnel.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from nas.core.io import atomic_file
from nas.core.log import get_logger
from nas.estimate.archs import parse_arch, sample_archs
from nas.estimate.correlate import CorrelateError, correlate_files, read_truth_csv
from nas.estimate.encodings import encode, resolve_encoding
from nas.estimate.predictors import PREDICTORS, Predictor, cross_validate
from supernet.genotypes import GenotypeBase
from supernet.spaces.base import SearchSpace

log = get_logger(__name__)

PREDICTIONS_FILE = "predictions.csv"
ESTIMATES_NAME = "estimates.csv"
CORRELATIONS_DIR = "correlations"


def check_settings(cfg: DictConfig) -> None:
    e = cfg.estimate
    if e.predictor is not None:
        PREDICTORS.lookup(e.predictor)
        if e.truth is None:
            raise ValueError(
                f"estimate.predictor={e.predictor} learns from evaluated architectures: give "
                f"estimate.truth=<a CSV of architectures and {e.truth_column}> (e.g. the "
                "results_jobs.csv a multirun of retrains writes) or a NAS-Bench-201 file "
                "(estimate.predictor_train random cells looked up there)."
            )
        if e.predictor_train < 2:
            raise ValueError(f"estimate.predictor_train={e.predictor_train}: need >= 2.")
    columns = list(dict.fromkeys([*e.proxies, "params", "macs"]))
    bad = [n for n in e.predictor_features if n not in columns]
    if e.predictor_features and (e.predictor is None or e.search is not None or bad):
        raise ValueError(
            f"estimate.predictor_features={list(e.predictor_features)}: extra predictor "
            f"features are columns this run scores ({', '.join(columns)}), with "
            "estimate.predictor set and no estimate.search."
            + (f" Not scored here: {bad}." if bad else "")
        )
    if e.truth is not None and not Path(e.truth).is_file():
        raise FileNotFoundError(
            f"estimate.truth={e.truth!r}: no such file (a CSV with an architecture column and "
            f"{e.truth_column!r}, or a NAS-Bench-201 file)."
        )
    if not 0 < e.top_k_percent <= 100:
        raise ValueError(f"estimate.top_k_percent={e.top_k_percent}: must be in (0, 100].")


def truth_fields(cfg: DictConfig, run_dir: Path, estimates: Path) -> dict[str, Any]:
    """Correlations of every ``estimates.csv`` column with the truth."""
    e = cfg.estimate
    try:
        report = correlate_files(
            estimates, e.truth, e.truth_column, e.top_k_percent, e.dataset,
            out=run_dir / CORRELATIONS_DIR,
        )  # fmt: skip
    except CorrelateError as err:
        raise ValueError(f"estimate.truth={e.truth}: {err}") from None
    columns = report["columns"]
    log.info(
        f"against {report['truth_column']} of {report['n_matched']} architectures: "
        + ", ".join(f"{n} ρ={r['spearman']:.2f}" for n, r in columns.items())
    )
    return {
        "correlations": {
            "truth": str(e.truth),
            "truth_column": report["truth_column"],
            "n_matched": report["n_matched"],
            "top_k_percent": e.top_k_percent,
            "columns": {
                n: {k: r[k] for k in ("spearman", "kendall", "top_k_precision", "n", "n_nonfinite")}
                for n, r in columns.items()
            },
            "files": report["files"],
        }
    }


def is_csv(path: Any) -> bool:
    return str(path).lower().endswith(".csv")


def training_set(cfg: DictConfig, space: SearchSpace) -> tuple[list[GenotypeBase], np.ndarray]:
    """The predictor's training pairs: the truth CSV's architectures of ``space`` with their
    values (several rows of one architecture, e.g. seeds: their mean), or, for a benchmark
    file, ``estimate.predictor_train`` random architectures (seed + 1, apart from the
    estimated sample's stream) with the benchmark's validation accuracy on ``estimate.dataset``
    (the benchmark's search protocol: test accuracy stays for reporting)."""
    e = cfg.estimate
    if not is_csv(e.truth):
        return benchmark_training_set(cfg, space)
    try:
        texts, values, _ = read_truth_csv(Path(e.truth), e.truth_column)
    except CorrelateError as err:
        raise ValueError(f"estimate.truth={e.truth}: {err}") from None
    by_arch: dict[str, list[float]] = {}
    genotypes: dict[str, GenotypeBase] = {}
    for text, value in zip(texts, values, strict=True):
        if not np.isfinite(value):
            continue
        genotype = parse_arch(text, space, source=f"estimate.truth={e.truth}")
        key = str(genotype)
        genotypes[key] = genotype
        by_arch.setdefault(key, []).append(float(value))
    keys = list(by_arch)
    return [genotypes[k] for k in keys], np.array([np.mean(by_arch[k]) for k in keys])


def benchmark_training_set(cfg: DictConfig, space: SearchSpace):
    from nas.estimate.benchmark import lookup

    e = cfg.estimate
    field = f"{e.dataset}_valid_acc"
    genotypes, values, reasons = [], [], set()
    for arch in sample_archs(space, e.predictor_train, cfg.seed + 1):
        key = space.benchmark_key(arch.genotype)
        result = lookup(key, str(e.truth)) if key is not None else {"reason": "no benchmark"}
        if result.get("available") and field in result:
            genotypes.append(arch.genotype)
            values.append(float(result[field]))
        else:
            reasons.add(str(result.get("reason", f"no {field}")))
    if len(values) < 2:
        raise ValueError(
            f"estimate.truth={e.truth}: {len(values)} of {e.predictor_train} random "
            f"architectures have a {field} there ({'; '.join(sorted(reasons))[:300]})."
        )
    return genotypes, np.array(values)


def proxy_features(cfg: DictConfig, genotypes: list[GenotypeBase], table) -> np.ndarray | None:
    """The ``estimate.predictor_features`` columns of ``estimates.csv`` for ``genotypes``
    (rows matched by the genotype's text), or None when none are asked for."""
    names = list(cfg.estimate.predictor_features)
    if not names:
        return None
    if table is None:
        raise ValueError(
            "estimate.predictor_features needs proxy scores: with estimate.objective=predictor "
            "they are not computed; leave estimate.predictor_features empty."
        )
    missing = [n for n in names if n not in table]
    if missing:
        raise ValueError(
            f"estimate.predictor_features={names}: {missing} are not columns of "
            f"{ESTIMATES_NAME} ({', '.join(c for c in table if c != 'arch')})."
        )
    row = {arch_text: i for i, arch_text in enumerate(table["keys"])}
    absent = [str(g) for g in genotypes if str(g) not in row]
    if absent:
        raise ValueError(
            f"estimate.predictor_features: {len(absent)} architectures of estimate.truth have "
            f"no row in {ESTIMATES_NAME} (e.g. {absent[0]}): score them too (list them in "
            "estimate.archs)."
        )
    return np.array([[table[n][row[str(g)]] for n in names] for g in genotypes], dtype=float)


def fit_predictor(
    cfg: DictConfig, space: SearchSpace, table=None
) -> tuple[Predictor, dict[str, Any]]:
    """The predictor trained on the whole truth set (encodings, and the proxies named in
    ``estimate.predictor_features``), and its cross-validated ρ / τ. A truth architecture
    with a non-finite proxy score is left out of the training set (counted)."""
    e = cfg.estimate
    genotypes, y = training_set(cfg, space)
    encoding = resolve_encoding(space, e.encoding)
    X = encode(space, genotypes, encoding)
    extra = proxy_features(cfg, genotypes, table)
    dropped = 0
    if extra is not None:
        keep = np.isfinite(extra).all(axis=1)
        dropped = int((~keep).sum())
        X, y, extra = X[keep], y[keep], extra[keep]
    folds = min(e.folds, len(y) // 2)
    report = cross_validate(e.predictor, X, y, folds=folds, seed=cfg.seed, extra=extra)
    features = f" + {', '.join(e.predictor_features)}" if extra is not None else ""
    log.info(
        f"predictor {e.predictor} on {len(y)} architectures ({encoding} encoding{features}): "
        f"{folds}-fold ρ={report['spearman']:.3f}, τ={report['kendall']:.3f}"
    )
    model = Predictor(e.predictor, seed=cfg.seed).fit(X, y, extra)
    return model, {
        "predictor": e.predictor,
        "encoding": encoding,
        "features": list(e.predictor_features),
        "train_archs": len(y),
        "train_dropped_nonfinite": dropped,
        "cv_folds": folds,
        "cv_spearman": report["spearman"],
        "cv_kendall": report["kendall"],
        "cv_per_fold": report["folds"],
    }


def predict_fields(
    cfg: DictConfig, run_dir: Path, space: SearchSpace, archs: list, table=None
) -> dict:
    """Trains the predictor and ranks ``archs`` (``nas.estimate.archs.Arch``) by its
    prediction into ``predictions.csv`` (best first; an architecture with a non-finite
    feature gets nan, ranked last)."""
    model, report = fit_predictor(cfg, space, table)
    encoding = resolve_encoding(space, cfg.estimate.encoding)
    X = encode(space, [a.genotype for a in archs], encoding)
    extra = proxy_features(cfg, [a.genotype for a in archs], table)
    predicted = np.full(len(archs), np.nan)
    ok = np.ones(len(archs), bool) if extra is None else np.isfinite(extra).all(axis=1)
    if ok.any():
        predicted[ok] = model.predict(X[ok], None if extra is None else extra[ok])
    order = np.argsort(np.where(ok, -predicted, np.inf), kind="stable")
    path = run_dir / PREDICTIONS_FILE
    column = f"predicted_{cfg.estimate.truth_column}"
    with atomic_file(path) as f:
        w = csv.writer(f)
        w.writerow(["rank", "arch", column])
        for rank, i in enumerate(order, start=1):
            w.writerow([rank, archs[i].text, repr(float(predicted[i]))])
    best = int(order[0])
    return {
        "predictor": {
            **report,
            "predictions_file": str(path),
            "predicted_nonfinite": int((~ok).sum()),
            "best_arch": archs[best].text,
            "best_predicted": float(predicted[best]),
        }
    }


def read_predictions(run_dir: Path) -> dict[str, float]:
    """arch -> predicted value, from ``predictions.csv``."""
    with open(run_dir / PREDICTIONS_FILE, newline="") as f:
        return {r[1]: float(r[2]) for r in list(csv.reader(f))[1:]}
