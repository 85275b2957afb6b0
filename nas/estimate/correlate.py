"""How well do the estimates rank architectures? Their rank correlation with the truth.

Usage: ``python -m nas.estimate.correlate ESTIMATES TRUTH [--column test_acc] [--top-k 10]
[--dataset cifar10] [--out DIR]``.

``ESTIMATES``: the ``estimates.csv`` of ``stage=estimate``: column ``arch`` (a NAS-Bench-201
string, or a genotype's one-line JSON), then one column per proxy, ``params`` and ``macs``.
Every column but ``arch`` whose values are all numbers (``nan``/``inf`` and empty cells
included) is scored; others are listed as skipped.

``TRUTH``: a ``.csv`` with an architecture column (``arch``, or ``genotype`` as in
``nas.report.collect``'s ``results_jobs.csv``) and ``--column`` (when absent, ``<column>_pct``,
the percent column collect writes: ranks are the same); or any other path, a NAS-Bench-201
file, whose ``--dataset`` test accuracy is looked up per architecture
(``truth_from_benchmark``, through ``nas.estimate.benchmark``). Architectures are joined on
their genotype (each side's text is parsed: NB201 strings, ``mbconv:`` strings, DARTS
``Genotype(...)`` reprs and genotype JSON are all read, so an NB201 string matches the same
genotype's JSON), or on the exact text where it does not parse. An architecture listed more than
once (the same genotype retrained with several seeds) gets the mean of its values (the truth: of its finite
ones; an estimate column: nan/inf if any of its values is).

Per scored column: Spearman's ρ and Kendall's τ-b (``scipy.stats``), the top-k% precision (the
fraction of the truth's top k% that the column's own top k% holds; k% of the rows used, rounded
up, at least 1; higher scores count as better, ties broken by row order), ``n`` (the
architectures used) and ``n_nonfinite`` (those dropped because the column's value is nan or
inf: reported, never ranked). Architectures without a finite truth are dropped before (the
report's ``n_truth_missing``). Printed as a table and written into ``--out`` (default: the
estimates file's directory): ``correlations.json``, ``correlations.csv`` and
``scatter_<column>.png`` per column (column against truth, ρ in the title; a log axis for a
positive column spanning more than 3 decades, as zero-cost proxies often do).

Exit status 2, with one paragraph on stderr, for a missing file, a missing column (the
available ones are listed) or no architecture in common.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from nas.core.genotype import Genotype, GenotypeError, NB201Genotype, genotype_from_text
from nas.core.io import atomic_file, atomic_write_json
from nas.core.plots import new_figure, save_png, spans_decades

ARCH_COLUMNS = ("arch", "genotype")  # the truth's architecture column, first found
RESULT_FIELDS = ("spearman", "kendall", "top_k_precision", "top_k", "n", "n_nonfinite")


class CorrelateError(Exception):
    """Input that cannot be correlated: its message is the one paragraph shown to the user."""


# ---- the measures -------------------------------------------------------------------------
def top_k_precision(
    score: np.ndarray, truth: np.ndarray, top_k_percent: float
) -> tuple[float, int]:
    """(fraction of the truth's top k% that the score's top k% holds, k); k = ceil(n · k% /
    100), at least 1. Both arrays finite; higher is better; ties by row order (stable)."""
    n = len(truth)
    if n == 0:
        return float("nan"), 0
    k = max(1, math.ceil(n * top_k_percent / 100 - 1e-9))
    by_score = np.argsort(-score, kind="stable")[:k]
    by_truth = np.argsort(-truth, kind="stable")[:k]
    return len(set(by_score.tolist()) & set(by_truth.tolist())) / k, k


def correlation(score: np.ndarray, truth: np.ndarray, top_k_percent: float = 10) -> dict[str, Any]:
    """The measures of one score column against ``truth`` (same length; truth finite)."""
    score = np.asarray(score, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if score.shape != truth.shape:
        raise ValueError(f"score has shape {score.shape}, truth {truth.shape}.")
    finite = np.isfinite(score)
    s, t = score[finite], truth[finite]
    rho = tau = float("nan")
    if len(s) >= 2 and np.ptp(s) > 0 and np.ptp(t) > 0:  # else undefined: nan, no warning
        rho = float(stats.spearmanr(s, t).statistic)
        tau = float(stats.kendalltau(s, t).statistic)
    precision, k = top_k_precision(s, t, top_k_percent)
    return {
        "spearman": rho,
        "kendall": tau,
        "top_k_precision": precision,
        "top_k": k,
        "n": int(finite.sum()),
        "n_nonfinite": int((~finite).sum()),
    }


def correlations(
    scores: dict[str, np.ndarray], truth: np.ndarray, top_k_percent: float = 10
) -> dict[str, dict[str, Any]]:
    """Per score column: ``{"spearman", "kendall", "top_k_precision", "top_k", "n",
    "n_nonfinite"}`` against ``truth`` (rows where the truth is not finite are left out first;
    a score's nan/inf rows are dropped and counted in ``n_nonfinite``)."""
    if not 0 < top_k_percent <= 100:
        raise ValueError(f"top_k_percent={top_k_percent}: must be in (0, 100].")
    truth = np.asarray(truth, dtype=np.float64)
    keep = np.isfinite(truth)
    return {
        name: correlation(np.asarray(score, dtype=np.float64)[keep], truth[keep], top_k_percent)
        for name, score in scores.items()
    }


# ---- reading the inputs -------------------------------------------------------------------
def arch_key(text: str) -> str:
    """The join key of an architecture: its genotype's canonical JSON when the text parses
    (a space's marked text form, a DARTS ``Genotype(...)`` repr, or genotype JSON), else the
    stripped text."""
    text = text.strip()
    try:
        if text.startswith("{"):
            genotype = Genotype.from_dict(json.loads(text), source="architecture")
        else:
            genotype = genotype_from_text(text)
    except (GenotypeError, ValueError):
        return text
    return json.dumps(genotype.to_dict(), sort_keys=True)


def read_csv(path: Path, what: str) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise CorrelateError(
            f"The {what} {path} does not exist or is not a file. Pass the path of an existing "
            "CSV file (estimates: stage=estimate's estimates.csv; truth: a CSV with an "
            "architecture column and an accuracy column, or a NAS-Bench-201 file)."
        )
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    if not columns:
        raise CorrelateError(f"The {what} {path} is empty: it has no header row.")
    return columns, rows


def require_column(columns: Sequence[str], wanted: Sequence[str], path: Path, what: str) -> str:
    """The first of ``wanted`` among ``columns``, or an error naming them and the available."""
    for name in wanted:
        if name in columns:
            return name
    names = " or ".join(repr(w) for w in wanted)
    raise CorrelateError(
        f"The {what} {path} has no column {names}. Its columns are: {', '.join(columns)}."
    )


def to_float(value: str | None) -> float | None:
    """A CSV cell as a float (empty: nan), or None when it is not a number."""
    value = (value or "").strip()
    if not value:
        return float("nan")
    try:
        return float(value)
    except ValueError:
        return None


def grouped_mean(
    keys: Sequence[str], values: np.ndarray, skip_nonfinite: bool = False
) -> tuple[list[str], np.ndarray]:
    """Unique keys (first-seen order) and the mean of their rows of ``values`` ``[n, m]``. A
    non-finite value makes its group's mean non-finite (dropped later, not hidden), unless
    ``skip_nonfinite``: then the mean is over the group's finite values (nan if none)."""
    order: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        order.setdefault(key, []).append(i)
    means = np.full((len(order), values.shape[1]), np.nan)
    for g, rows in enumerate(order.values()):
        group = values[rows]
        if skip_nonfinite:
            finite = np.isfinite(group)
            counts = finite.sum(axis=0)
            sums = np.where(finite, group, 0.0).sum(axis=0)
            means[g] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        else:
            means[g] = group.mean(axis=0)
    return list(order), means


def read_estimates(path: Path) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """(arch texts, scored columns, their values ``[rows, columns]``, skipped columns)."""
    columns, rows = read_csv(path, "estimates file")
    arch = require_column(columns, ("arch",), path, "estimates file")
    scored, skipped, values = [], [], []
    for name in columns:
        if name == arch:
            continue
        parsed = [to_float(r.get(name)) for r in rows]
        if any(v is None for v in parsed):
            skipped.append(name)
            continue
        scored.append(name)
        values.append(parsed)
    if not scored:
        raise CorrelateError(
            f"The estimates file {path} has no numeric column besides {arch!r} to correlate. "
            f"Its columns are: {', '.join(columns)}."
        )
    matrix = np.array(values, dtype=np.float64).T.reshape(len(rows), len(scored))
    return [r[arch] or "" for r in rows], scored, matrix, skipped


def read_truth_csv(path: Path, column: str) -> tuple[list[str], np.ndarray, str]:
    """(arch texts, truth values, the column used) of a truth CSV."""
    columns, rows = read_csv(path, "truth file")
    arch = require_column(columns, ARCH_COLUMNS, path, "truth file")
    used = require_column(columns, (column, f"{column}_pct"), path, "truth file")
    values = []
    for r in rows:
        v = to_float(r.get(used))
        if v is None:
            raise CorrelateError(
                f"The truth file {path}: column {used!r} holds {r.get(used)!r}, not a number "
                f"(architecture {r.get(arch)!r}). Pick a numeric column with --column; the "
                f"columns are: {', '.join(columns)}."
            )
        values.append(v)
    return [r[arch] or "" for r in rows], np.array(values, dtype=np.float64), used


def truth_from_benchmark(path: str | Path, archs: Sequence[str], dataset: str) -> np.ndarray:
    """NAS-Bench-201's 200-epoch test accuracy (percent, mean over its seeds) on ``dataset``
    of each architecture (a NAS-Bench-201 string; nan where the benchmark lacks it), read from
    the benchmark file ``path`` through ``nas.estimate.benchmark.lookup``."""
    from nas.estimate import benchmark

    if dataset not in benchmark.DATASETS:
        raise CorrelateError(
            f"--dataset {dataset!r} is not a NAS-Bench-201 dataset; the datasets are: "
            f"{', '.join(benchmark.DATASETS)}."
        )
    field = f"{dataset}_test_acc"
    out, reasons = [], []
    for arch in archs:
        result = benchmark.lookup(arch, str(path))
        if result.get("available") and field in result:
            out.append(float(result[field]))
        else:
            out.append(float("nan"))
            reasons.append(result.get("reason", f"no {field}"))
    if archs and len(reasons) == len(archs):
        raise CorrelateError(
            f"{path} is not a .csv file, so it was read as a NAS-Bench-201 file, but none of the "
            f"{len(archs)} architectures has a {field} there; the first reason: {reasons[0]}. "
            "Pass a NAS-Bench-201 / NATS-Bench topology file, or the truth as a CSV with an "
            "architecture column and an accuracy column."
        )
    return np.array(out, dtype=np.float64)


def nb201_strings(archs: Sequence[str]) -> list[str]:
    """Each architecture as its NAS-Bench-201 string (a benchmark's key), from either form."""
    out = []
    for text in archs:
        key = arch_key(text)
        data = json.loads(key) if key.startswith("{") else None
        if not (isinstance(data, dict) and data.get("space") == "nb201"):
            raise CorrelateError(
                f"Architecture {text[:200]!r} is not a NAS-Bench-201 architecture, so it "
                "cannot be looked up in a NAS-Bench-201 file. Pass the truth as a CSV instead."
            )
        out.append(str(NB201Genotype.from_dict(data)))
    return out


# ---- the report ---------------------------------------------------------------------------
def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if not math.isfinite(value) else f"{value:.{digits}f}"


def table(results: dict[str, dict[str, Any]], top_k_percent: float) -> str:
    """The printed table: one row per scored column."""
    header = ["column", "spearman", "kendall", f"top-{top_k_percent:g}%", "n", "n_nonfinite"]
    lines = [
        [
            name,
            _fmt(r["spearman"]),
            _fmt(r["kendall"]),
            f"{_fmt(r['top_k_precision'], 2)} (k={r['top_k']})",
            str(r["n"]),
            str(r["n_nonfinite"]),
        ]
        for name, r in results.items()
    ]
    widths = [max(len(row[c]) for row in [header, *lines]) for c in range(len(header))]
    fmt = [row[0].ljust(widths[0]) + "  " + "  ".join(
        cell.rjust(w) for cell, w in zip(row[1:], widths[1:])
    ) for row in [header, *lines]]  # fmt: skip
    return "\n".join([fmt[0], "-" * len(fmt[0]), *fmt[1:]])


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "column"


def scatter(
    name: str, score: np.ndarray, truth: np.ndarray, result: dict[str, Any], truth_label: str
) -> Figure:
    """The column against the truth (finite rows), ρ and τ in the title."""
    fig, ax = new_figure(4.8, 3.8)
    finite = np.isfinite(score) & np.isfinite(truth)
    x, y = score[finite], truth[finite]
    ax.scatter(x, y, s=10, alpha=0.6, edgecolors="none")
    if spans_decades(x):
        ax.set_xscale("log")
    dropped = f", {result['n_nonfinite']} nan/inf dropped" if result["n_nonfinite"] else ""
    ax.set_title(
        f"{name}: ρ = {_fmt(result['spearman'])}, τ = {_fmt(result['kendall'])} "
        f"(n = {result['n']}{dropped})",
        fontsize=9,
    )
    ax.set_xlabel(name)
    ax.set_ylabel(truth_label)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_outputs(
    out: Path,
    results: dict[str, dict[str, Any]],
    report: dict[str, Any],
    scores: dict[str, np.ndarray],
    truth: np.ndarray,
) -> list[Path]:
    """``correlations.json``, ``correlations.csv`` and the scatter plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    clean = {n: {k: _json_number(v) for k, v in r.items()} for n, r in results.items()}
    atomic_write_json(out / "correlations.json", {**report, "columns": clean})
    with atomic_file(out / "correlations.csv") as f:
        w = csv.writer(f)
        w.writerow(["column", *RESULT_FIELDS])
        for name, r in results.items():
            w.writerow([name, *(r[k] for k in RESULT_FIELDS)])
    paths = [out / "correlations.json", out / "correlations.csv"]
    for name, r in results.items():
        fig = scatter(name, scores[name], truth, r, report["truth_column"])
        paths.append(save_png(fig, out / f"scatter_{safe_name(name)}.png"))
    return paths


def correlate_files(
    estimates: str | Path,
    truth: str | Path,
    column: str = "test_acc",
    top_k_percent: float = 10,
    dataset: str = "cifar10",
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Reads, joins, scores and writes (module docstring); returns the report (what
    ``correlations.json`` holds, with nan for undefined values)."""
    estimates, truth = Path(estimates), Path(truth)
    if not 0 < top_k_percent <= 100:
        raise CorrelateError(f"--top-k {top_k_percent}: must be a percentage in (0, 100].")
    archs, names, values, skipped = read_estimates(estimates)
    keys, values = grouped_mean([arch_key(a) for a in archs], values)
    if truth.suffix.lower() == ".csv":
        truth_archs, truth_values, truth_column = read_truth_csv(truth, column)
        truth_keys, truth_means = grouped_mean(
            [arch_key(a) for a in truth_archs], truth_values[:, None], skip_nonfinite=True
        )
        by_key = dict(zip(truth_keys, truth_means[:, 0]))
        n_truth = len(truth_keys)
    else:
        if not truth.exists():
            raise CorrelateError(
                f"The truth file {truth} does not exist. Pass a CSV with an architecture "
                "column and an accuracy column, or a NAS-Bench-201 file."
            )
        truth_column = f"{dataset}_test_acc"
        looked_up = truth_from_benchmark(truth, nb201_strings(keys), dataset)
        by_key = {k: v for k, v in zip(keys, looked_up) if math.isfinite(v)}
        n_truth = len(by_key)
    in_truth = [i for i, k in enumerate(keys) if k in by_key]
    matched = [i for i in in_truth if math.isfinite(by_key[keys[i]])]
    if not matched:
        if not archs:
            raise CorrelateError(
                f"The estimates file {estimates} has no rows: nothing to correlate."
            )
        lacking = (
            f" ({len(in_truth)} are listed there, but without a finite {truth_column!r})"
            if in_truth
            else ""
        )
        raise CorrelateError(
            f"No architecture of the estimates file {estimates} ({len(keys)} architectures, "
            f"e.g. {archs[0][:120]!r}) has a true value in {truth} ({n_truth} architectures)"
            f"{lacking}: nothing to correlate. Check that both come from the same search space "
            "and architecture format (NB201 strings, genotype JSON, or the genotype's text form)."
        )
    truth_vec = np.array([by_key[keys[i]] for i in matched], dtype=np.float64)
    scores = {name: values[matched, c] for c, name in enumerate(names)}
    results = correlations(scores, truth_vec, top_k_percent)
    report = {
        "estimates": str(estimates),
        "truth": str(truth),
        "truth_column": truth_column,
        "top_k_percent": top_k_percent,
        "n_estimates": len(keys),
        "n_truth": n_truth,
        "n_matched": len(matched),
        "n_truth_missing": len(in_truth) - len(matched),
        "skipped_columns": skipped,
    }
    out_dir = estimates.parent if out is None else Path(out)
    report["files"] = [str(p) for p in write_outputs(out_dir, results, report, scores, truth_vec)]
    return {**report, "columns": results}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nas.estimate.correlate",
        description="Rank correlation of estimates.csv's columns with the true accuracy.",
    )
    parser.add_argument("estimates", help="estimates.csv of stage=estimate")
    parser.add_argument("truth", help="a CSV (arch/genotype + --column) or a NAS-Bench-201 file")
    parser.add_argument("--column", default="test_acc", help="the truth CSV's accuracy column")
    parser.add_argument("--top-k", type=float, default=10.0, help="top-k%% precision's k, in %%")
    parser.add_argument("--dataset", default="cifar10", help="NAS-Bench-201 file's dataset")
    parser.add_argument("--out", default=None, help="output directory (default: estimates')")
    args = parser.parse_args(argv)
    try:
        report = correlate_files(
            args.estimates, args.truth, args.column, args.top_k, args.dataset, args.out
        )
    except CorrelateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{report['n_matched']} of {report['n_estimates']} estimated architectures in the truth "
        f"with a finite {report['truth_column']} ({report['n_truth_missing']} more without one)."
    )
    if report["skipped_columns"]:
        print(f"Skipped non-numeric columns: {', '.join(report['skipped_columns'])}.")
    print(table(report["columns"], report["top_k_percent"]))
    print(f"Wrote {', '.join(report['files'][:2])} and {len(report['files']) - 2} scatter plots.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
