"""Collects a Hydra multirun into the results table of a NAS paper.

Usage: ``python -m nas.report.collect MULTIRUN_DIR [--out DIR] [--metric test_acc]
[--cost macs|params|latency_ms|latency_ms_table] [--wandb auto|offline|online|none]``. A multirun of
``train.py`` runs it by itself when its last job ends (``collect.*`` in ``conf/config.yaml``).

Every directory below MULTIRUN_DIR holding a ``summary.json`` is a job (sweeps may nest). Jobs
are grouped by their ``.hydra/overrides.yaml`` minus ``seed=`` and ``hydra.*``; a group's label
is its overrides that not every job shares (the shared ones are printed above the table), or
``default``. Per group: the seeds, and mean ± sample std (ddof=1; std ``–`` for one seed) of
test and search-validation accuracy, params, MACs, search time and ``skip_connect`` count. A
value a job does not report (a search-only run has no test accuracy) is ``–``, never 0.

Incomplete jobs are listed, never averaged nor silently dropped: a ``.hydra/`` without
``summary.json`` (failed or running), or a corrupt ``summary.json`` (a warning names it, and
collection goes on). Exit status 2, with one paragraph on stderr, for a missing directory or
one without any finished job. Writes, into ``--out`` (default MULTIRUN_DIR): ``results.md``
(table, genotypes per group and seed, incomplete jobs), ``results.csv`` (per group:
``<metric>_mean``, ``_std``, ``_n`` in the table's units), ``results_jobs.csv`` (per job) and
``accuracy_vs_params.png`` (``--metric`` against params, error bars = std over seeds; falls back
to search validation accuracy when no job has a test accuracy, and its axis says so).

The multi-objective result, for sweeps of a cost penalty (e.g. ``-m
strategy.regularizers.0.scale=0,0.1,1``): when jobs report ``--cost`` and an accuracy,
``pareto_<cost>.png`` (accuracy against cost per configuration, error bars = std over seeds,
the non-dominated configurations joined as the front) and a "Pareto front" section of
``results.md`` listing them.

W&B (``nas/report/collect_wandb.py``): with ``--wandb auto`` a sweep whose jobs logged to W&B
gets one more run, ``job_type=collect``, holding the figures, the tables, a scatter chart of
the front and every file above as an artifact (offline: under ``<out>/wandb/``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from nas.core.genotype import (
    GenotypeBase,
    GenotypeError,
    count_op,
    genotype_from_text,
    load_genotype,
)
from nas.report import collect_wandb


class Metric(NamedTuple):
    """A column. ``digits`` > 0: significant digits of the mean (the std to the same decimal
    place); <= 0: ``-digits`` decimals."""

    key: str
    label: str
    column: str
    scale: float
    digits: int


METRICS = (
    Metric("test_acc", "test acc (%)", "test_acc_pct", 100.0, -2),
    Metric("search_val_acc", "search val acc (%)", "search_val_acc_pct", 100.0, -2),
    Metric("params", "params (M)", "params_M", 1e-6, 4),
    Metric("macs", "MACs (M)", "macs_M", 1e-6, 4),
    Metric("search_wall_time_s", "search time (min)", "search_time_min", 1 / 60, 3),
    Metric("skip_count", "skip_connect ops", "skip_connect_ops", 1.0, -1),  # from the genotype
)
# Columns shown only when some job reports them: the robustness diagnostics at the end of
# the search (the final α's mean per-edge entropy; the Hessian's dominant eigenvalue, with
# diagnostics.hessian_every > 0).
OPTIONAL_METRICS = (
    Metric("latency_ms", "latency (ms)", "latency_ms", 1.0, 3),
    Metric("latency_ms_table", "latency, table (ms)", "latency_ms_table", 1.0, 3),
    Metric("alpha_entropy", "H(α) (nats)", "alpha_entropy", 1.0, -3),
    Metric("hessian_eigenvalue", "λmax(∇²α L_val)", "hessian_eigenvalue", 1.0, 3),
)
LEGEND = (
    "test acc: the retrained network on the test split; search val acc: the supernet on the "
    "search's validation split at the end of search; params (auxiliary head excluded) and MACs: "
    "the child network; search time: wall clock of the search stage; skip_connect ops: kept "
    "edges of the genotype (all searched cells) that are skip connections; H(α): mean entropy "
    "of the final per-edge op distributions (log K when uniform); λmax: dominant eigenvalue of "
    "the Hessian of the validation loss w.r.t. α at the end of the search; latency: the "
    "child network's forward as measured (summary.json ``latency``: batch, threads, device); "
    "latency, table: its estimate from the latency lookup table the search used."
)
# The --cost axes of the Pareto figure (minimised; accuracy maximised).
COSTS = ("macs", "params", "latency_ms", "latency_ms_table")
ACCURACIES = ("test_acc", "search_val_acc")  # the --metric axes
NOTE = (
    "Mean ± sample std (ddof=1) over seeds; std – with one seed; – alone: not reported; "
    "(n=k): mean over the k jobs that report it."
)
DASH = "–"


class CollectError(Exception):
    """A multirun directory that cannot be collected."""


@dataclass
class Job:
    """One finished job: its directory, overrides, seed, metrics (table units), genotype."""

    path: Path
    overrides: tuple[str, ...]
    seed: int | None
    metrics: dict[str, float]
    genotype: str | None
    label: str = ""


@dataclass
class Group:
    """The jobs of one configuration, in seed order."""

    label: str
    jobs: list[Job] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [j.metrics[key] for j in self.jobs if key in j.metrics]


def parse_genotype(job_dir: Path, summary: dict[str, Any]) -> GenotypeBase | None:
    """The job's genotype from its ``genotype.json``, else from the summary's text form."""
    text = summary.get("genotype")
    try:
        if (job_dir / "genotype.json").is_file():
            return load_genotype(job_dir / "genotype.json")
        if isinstance(text, str):
            return genotype_from_text(text, summary.get("space") or None)
    except (GenotypeError, ValueError):
        pass
    return None


def config_overrides(job_dir: Path) -> tuple[tuple[str, ...], int | None]:
    """The job's overrides without ``seed`` and ``hydra``, and its seed override if any."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return (), None
    import yaml  # Hydra's record of the job, plain YAML: no OmegaConf below nas.run

    kept, seed = [], None
    for item in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(item).partition("=")
        key = key.lstrip("+~")
        if key == "seed":
            seed = int(value) if value.lstrip("-").isdigit() else None
        elif not key.startswith(("hydra.", "hydra/")):
            kept.append(str(item))
    return tuple(kept), seed


def read_job(job_dir: Path) -> Job:
    """The job of a directory with a ``summary.json``; ValueError if that file is corrupt."""
    summary = json.loads((job_dir / "summary.json").read_text())  # ValueError if corrupt
    if not isinstance(summary, dict):
        raise ValueError(f"a JSON {type(summary).__name__}, not an object")
    overrides, seed = config_overrides(job_dir)
    metrics = {
        m.key: float(summary[m.key]) * m.scale
        for m in (*METRICS, *OPTIONAL_METRICS)
        if isinstance(summary.get(m.key), (int, float)) and not isinstance(summary[m.key], bool)
    }
    genotype = parse_genotype(job_dir, summary)
    if genotype is not None and "skip_connect" in genotype.known_ops:  # spaces with a skip op
        metrics["skip_count"] = float(count_op(genotype, "skip_connect"))
    text = str(genotype) if genotype is not None else summary.get("genotype")
    if isinstance(summary.get("seed"), int):
        seed = summary["seed"]
    return Job(job_dir, overrides, seed, metrics, text)


def find_jobs(root: Path) -> tuple[list[Job], list[tuple[Path, str]]]:
    """The finished jobs below ``root`` and the incomplete ones with the reason."""
    jobs, incomplete = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if "summary.json" not in filenames:
            if (here / ".hydra").is_dir():
                incomplete.append((here, "no summary.json: failed or still running"))
            continue
        try:
            jobs.append(read_job(here))
        except ValueError as err:
            why = f"corrupt summary.json: {err}"
            print(f"warning: {here}: {why}; listed as incomplete, not averaged", file=sys.stderr)
            incomplete.append((here, why))
    return jobs, incomplete


def group_jobs(jobs: list[Job]) -> tuple[list[Group], list[str]]:
    """Groups jobs by their override set; returns the groups and the overrides all share."""
    keys = {tuple(sorted(j.overrides)) for j in jobs}
    common = sorted(set.intersection(*(set(k) for k in keys))) if len(keys) > 1 else []
    groups: dict[tuple[str, ...], Group] = {}
    for job in jobs:
        label = " ".join(o for o in job.overrides if o not in common) or "default"
        groups.setdefault(tuple(sorted(job.overrides)), Group(label)).jobs.append(job)
    for g in groups.values():
        for job in g.jobs:
            job.label = g.label
        g.jobs.sort(key=lambda j: (j.seed is None, j.seed or 0, str(j.path)))
    return sorted(groups.values(), key=lambda g: natural_key(g.label)), common


def natural_key(label: str) -> tuple:
    """Orders labels with numbers by value: ``weight=0.3`` before ``weight=3`` before
    ``weight=10`` (a swept value's own order), text parts alphabetically."""
    parts = re.split(r"(\d+(?:\.\d+)?(?:e[-+]?\d+)?)", label)
    return tuple((0, float(t), "") if i % 2 else (1, 0.0, t) for i, t in enumerate(parts) if t)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1; None for fewer than two values)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def shown_metrics(groups: list[Group]) -> tuple[Metric, ...]:
    """The table's columns: every ``METRICS`` column, and the optional ones some job reports."""
    reported = [m for m in OPTIONAL_METRICS if any(g.values(m.key) for g in groups)]
    return (*METRICS, *reported)


def cell(group: Group, metric: Metric) -> str:
    """``mean ± std`` of a metric over the group's jobs, or ``–``."""
    values = group.values(metric.key)
    mean, std = mean_std(values)
    if mean is None:
        return DASH
    text = format_mean_std(metric, mean, std)
    return text + (f" (n={len(values)})" if len(values) < len(group.jobs) else "")


def format_mean_std(metric: Metric, mean: float, std: float | None) -> str:
    """``mean ± std`` to the metric's digits (``–`` for a missing std)."""
    decimals = -metric.digits
    if metric.digits > 0:  # significant digits of the mean
        exponent = math.floor(math.log10(abs(mean))) if mean else 0
        decimals = max(0, metric.digits - 1 - exponent)
    return f"{mean:.{decimals}f} ± " + (DASH if std is None else f"{std:.{decimals}f}")


def markdown(
    root: Path, groups: list[Group], common: list[str], incomplete: list[tuple[Path, str]]
) -> tuple[str, str]:
    """The results table alone and the whole ``results.md``."""
    seeds = [", ".join(DASH if j.seed is None else str(j.seed) for j in g.jobs) for g in groups]
    metrics = shown_metrics(groups)
    rows = [
        ["configuration", "n", "seeds", *(m.label for m in metrics)],
        ["---"] * (3 + len(metrics)),
        *(
            [g.label, str(len(g.jobs)), s, *(cell(g, m) for m in metrics)]
            for g, s in zip(groups, seeds)
        ),
    ]
    table = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    n_jobs = sum(len(g.jobs) for g in groups)
    broken = "; ".join(f"`{p}` ({why})" for p, why in incomplete) or "none"
    shared = " ".join(common) or "none"
    lines = [
        f"# Results of `{root}`\n\n{n_jobs} finished jobs in {len(groups)} configurations. "
        f"Overrides shared by every job: `{shared}`.\n\n{table}\n\n{NOTE} {LEGEND}\n\n"
        f"Incomplete jobs (not averaged): {broken}.\n\n## Genotypes"
    ]
    for g in groups:
        lines += ["", f"### {g.label}", ""]
        lines += [
            f"- seed {DASH if j.seed is None else j.seed} (`{j.path}`): `{j.genotype or DASH}`"
            for j in g.jobs
        ]
    return table, "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "" if value is None else repr(round(value, 10))


def write_csvs(out: Path, groups: list[Group]) -> tuple[Path, Path]:
    """``results.csv`` (per configuration) and ``results_jobs.csv`` (per job); empty = missing."""
    path, jobs_path = out / "results.csv", out / "results_jobs.csv"
    metrics = shown_metrics(groups)
    stats = [f"{m.column}_{s}" for m in metrics for s in ("mean", "std", "n")]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "n", "seeds", *stats])
        for g in groups:
            row = [g.label, len(g.jobs), " ".join(str(j.seed) for j in g.jobs)]
            for m in metrics:
                vals = g.values(m.key)
                row += [*map(_num, mean_std(vals)), len(vals)]
            w.writerow(row)
    with jobs_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "seed", *(m.column for m in metrics), "genotype", "job_dir"])
        for j in (j for g in groups for j in g.jobs):
            values = [_num(j.metrics.get(m.key)) for m in metrics]
            w.writerow(
                [j.label, "" if j.seed is None else j.seed, *values, j.genotype or "", j.path]
            )
    return path, jobs_path


MARKERS = "osD^v<>Pp*hX"


def config_styles(labels: Iterable[str]) -> dict[str, dict[str, str]]:
    """Colour and marker per configuration label, the same in every figure of a sweep: by the
    label's place among all of the sweep's configurations (in ``natural_key`` order), not by
    its place in one figure's points."""
    ordered = sorted(set(labels), key=natural_key)
    return {
        label: {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)]}
        for i, label in enumerate(ordered)
    }


def plot(
    out: Path,
    groups: list[Group],
    metric: str,
    root: Path,
    styles: dict[str, dict[str, str]] | None = None,
) -> Path:
    """Accuracy against params per configuration: mean ± std with error bars, seeds faint;
    ``styles``: ``config_styles`` of the sweep (default: of ``groups``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {m.key: m.label for m in METRICS}
    metric, note = accuracy_metric(groups, metric)
    styles = styles or config_styles(g.label for g in groups)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for g in groups:
        pts = [
            (j.metrics["params"], j.metrics[metric])
            for j in g.jobs
            if {"params", metric} <= j.metrics.keys()
        ]
        if not pts:
            continue
        xs, ys = zip(*pts)
        style = styles[g.label]
        ax.scatter(xs, ys, alpha=0.3, s=25, **style)
        (mx, sx), (my, sy) = mean_std(list(xs)), mean_std(list(ys))
        bars = {"xerr": sx or 0, "yerr": sy or 0, "ms": 8, "capsize": 4, "ls": "none"}
        ax.errorbar(mx, my, label=f"{g.label} (n={len(pts)})", **bars, **style)
    ax.set_xlabel("params without auxiliary head (M)")
    ax.set_ylabel(labels[metric] + note)
    ax.set_title(f"{root}: mean ± std over seeds; faint: one point per seed", fontsize=9)
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no job reports params and accuracy", transform=ax.transAxes)
    path = out / "accuracy_vs_params.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def accuracy_metric(groups: list[Group], metric: str) -> tuple[str, str]:
    """``metric``, or the other accuracy when no job reports it, and a note saying so."""
    if any(g.values(metric) for g in groups):
        return metric, ""
    other = "search_val_acc" if metric == "test_acc" else "test_acc"
    return other, f"; no job has {metric}"


class ParetoPoint(NamedTuple):
    """A configuration's mean (± std over seeds) cost and accuracy, in table units."""

    label: str
    cost: float
    cost_std: float | None
    acc: float
    acc_std: float | None
    n: int


def pareto_points(groups: list[Group], cost: str, metric: str) -> list[ParetoPoint]:
    """One point per configuration, over its jobs that report both the cost and ``metric``."""
    points = []
    for g in groups:
        pairs = [(j.metrics[cost], j.metrics[metric]) for j in g.jobs if {cost, metric} <= j.metrics.keys()]  # fmt: skip
        if pairs:
            (c, cs), (a, s) = (mean_std(list(v)) for v in zip(*pairs))
            points.append(ParetoPoint(g.label, c, cs, a, s, len(pairs)))
    return points


def pareto_front(points: list[ParetoPoint]) -> list[ParetoPoint]:
    """The non-dominated points, by increasing cost: none other has a cost as low and an
    accuracy as high, one of them strictly (equal points are both on the front)."""

    def dominated(p: ParetoPoint) -> bool:
        return any(
            q.cost <= p.cost and q.acc >= p.acc and (q.cost < p.cost or q.acc > p.acc)
            for q in points
        )

    return sorted((p for p in points if not dominated(p)), key=lambda p: (p.cost, -p.acc))


def cost_metric(cost: str) -> Metric:
    return next(m for m in (*METRICS, *OPTIONAL_METRICS) if m.key == cost)


def pareto_markdown(points: list[ParetoPoint], cost: str, metric: str, note: str) -> str:
    """The ``results.md`` section: the front's configurations, cheapest first."""
    c, a = cost_metric(cost), cost_metric(metric)
    front = pareto_front(points)
    rows = [f"| configuration | n | {c.label} | {a.label} |", "| --- | --- | --- | --- |"]
    for p in front:
        values = format_mean_std(c, p.cost, p.cost_std), format_mean_std(a, p.acc, p.acc_std)
        rows.append(f"| {p.label} | {p.n} | {values[0]} | {values[1]} |")
    return (
        f"\n## Pareto front: {a.label} vs {c.label}{note}\n\n{len(front)} of {len(points)} "
        f"configurations are non-dominated (no other has both a lower or equal mean "
        f"{c.label} and a higher or equal mean {a.label}, one strictly); "
        f"figure `pareto_{cost}.png`.\n\n" + "\n".join(rows) + "\n"
    )


def plot_pareto(
    out: Path,
    points: list[ParetoPoint],
    cost: str,
    metric: str,
    title: str,
    styles: dict[str, dict[str, str]] | None = None,
) -> Path:
    """Accuracy against cost, one marker per configuration (error bars: std over seeds), the
    front drawn as the staircase of what is attainable; dominated configurations faint.
    ``styles``: ``config_styles`` of the sweep (default: of ``points``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front(points)
    on_front = {p.label for p in front}
    styles = styles or config_styles(p.label for p in points)
    fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=120)
    for p in sorted(points, key=lambda p: p.cost):
        best = p.label in on_front
        style = styles[p.label]
        bars = {"xerr": p.cost_std or 0, "yerr": p.acc_std or 0, "ms": 8, "capsize": 4}
        tag = "front" if best else "dominated"
        ax.errorbar(
            p.cost,
            p.acc,
            ls="none",
            alpha=1.0 if best else 0.35,
            mec="black" if best else None,
            label=f"{p.label} (n={p.n}, {tag})",
            **bars,
            **style,
        )
    xs = [p.cost for p in front]
    ys = [p.acc for p in front]
    ax.step(xs, ys, where="post", color="black", lw=1.2, ls="--", label="Pareto front", zorder=1)
    if len(points) > 1 and min(p.cost for p in points) > 0:
        spread = max(p.cost for p in points) / min(p.cost for p in points)
        if spread > 20:
            ax.set_xscale("log")
    ax.set_xlabel(cost_metric(cost).label + " (lower is better)")
    ax.set_ylabel(cost_metric(metric).label + " (higher is better)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    path = out / f"pareto_{cost}.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def pareto(
    out: Path, groups: list[Group], cost: str, metric: str, root: Path
) -> tuple[Path | None, str, str, list[ParetoPoint]]:
    """``pareto_<cost>.png`` and its ``results.md`` section, when some configuration reports
    the cost and an accuracy (else None and ""), with the accuracy metric used and the points."""
    metric, note = accuracy_metric(groups, metric)
    points = pareto_points(groups, cost, metric)
    if not points:
        return None, "", metric, points
    title = f"{root}: mean ± std over seeds per configuration{note}"
    png = plot_pareto(out, points, cost, metric, title, config_styles(g.label for g in groups))
    return png, pareto_markdown(points, cost, metric, note), metric, points


def check_settings(metric: str, cost: str, wandb: str) -> None:
    """CollectError naming the first invalid axis or W&B mode and the valid choices."""
    for name, value, valid in (
        ("metric", metric, ACCURACIES),
        ("cost", cost, COSTS),
        ("wandb", wandb, collect_wandb.MODES),
    ):
        if value not in valid:
            raise CollectError(
                f"collect {name} must be one of {', '.join(valid)}, got {value!r} (the "
                f"command line's --{name}, or collect.{name} of a train.py multirun)."
            )


def wandb_front(points: list[ParetoPoint], cost: str, metric: str) -> collect_wandb.Front:
    """The Pareto figure's points as the rows of its W&B table."""
    front = {p.label for p in pareto_front(points)}
    rows = [(p.label, p.n, p.cost, p.cost_std, p.acc, p.acc_std, p.label in front) for p in points]
    return collect_wandb.Front(cost_metric(cost).label, cost_metric(metric).label, rows)


def collect(
    root: Path,
    out: Path | None = None,
    metric: str = "test_acc",
    cost: str = "macs",
    wandb: str = "auto",
) -> list[Path]:
    """Writes the result files for the multirun ``root`` and, unless ``wandb`` resolves to
    ``none`` (``nas/report/collect_wandb.py``), logs them to a W&B run; returns their paths."""
    check_settings(metric, cost, wandb)
    if not root.is_dir():
        raise CollectError(
            f"The multirun directory {str(root)!r} does not exist or is not a directory: pass "
            "the folder that `python train.py -m ...` wrote its jobs into (hydra.sweep.dir, by "
            "default multirun/<date>/<time>/)."
        )
    jobs, incomplete = find_jobs(root)
    if not jobs:
        seen = "".join(f" Incomplete: {p} ({why})." for p, why in incomplete)
        raise CollectError(
            f"No finished job under {str(root)!r}: looked recursively for directories holding "
            "a valid summary.json (which train.py writes when a job ends) and found none; is "
            f"this the sweep directory of a multirun, and did its jobs finish?{seen}"
        )
    out = out or root
    out.mkdir(parents=True, exist_ok=True)
    groups, common = group_jobs(jobs)
    table, text = markdown(root, groups, common, incomplete)
    front_png, front_md, front_metric, points = pareto(out, groups, cost, metric, root)
    (out / "results.md").write_text(text + front_md)
    paths = [out / "results.md", *write_csvs(out, groups), plot(out, groups, metric, root)]
    paths += [front_png] if front_png else []
    print(table)
    for p, why in incomplete:
        print(f"incomplete, not averaged: {p} ({why})")
    print("wrote: " + ", ".join(str(p) for p in paths))
    mode, settings = collect_wandb.resolve(wandb, [j.path for j in jobs])
    if mode != "none":
        fronts = {cost: wandb_front(points, cost, front_metric)} if points else {}
        try:
            run = collect_wandb.log_collection(
                mode, settings, root, out, groups, common, fronts, paths
            )
        except Exception as err:  # noqa: BLE001 - W&B's errors (no API key, network) vary
            raise CollectError(
                f"the results were written ({', '.join(str(p) for p in paths)}) but logging "
                f"them to W&B ({mode}) failed: {type(err).__name__}: {err}. Run `wandb login` "
                "for online mode, or collect again with --wandb offline|none "
                "(collect.wandb= for a multirun)."
            ) from err
        sync = f"; upload with: wandb sync {run['dir']}" if mode == "offline" else ""
        print(f"W&B ({mode}): collect run {run['run_id']} in {run['dir']}{sync}")
    return paths


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m nas.report.collect", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("multirun_dir", type=Path, help="the sweep directory of a multirun")
    parser.add_argument("--out", type=Path, help="output directory (default: multirun_dir)")
    parser.add_argument(
        "--metric",
        default="test_acc",
        choices=ACCURACIES,
        help="accuracy on the figure's y axis (default: test_acc)",
    )
    parser.add_argument(
        "--cost",
        default="macs",
        choices=COSTS,
        help="cost axis of pareto_<cost>.png, the accuracy-vs-cost front (default: macs)",
    )
    parser.add_argument(
        "--wandb",
        default="auto",
        choices=collect_wandb.MODES,
        help="log the figures, tables and files to a W&B run: auto (as the jobs logged: "
        "offline, online, or not at all), offline, online, none (default: auto)",
    )
    args = parser.parse_args(argv)
    try:
        collect(args.multirun_dir, args.out, args.metric, args.cost, args.wandb)
    except CollectError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
