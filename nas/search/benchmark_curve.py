"""The anytime benchmark curve of a search: the tabular benchmark's accuracy of the genotype the
search would return after each epoch.

Weight-sharing searches are judged by the architecture they end with, but on NAS-Bench-201 the
curve of that architecture's true (benchmark) accuracy over the search is what shows a search
degrading, the failure DARTS shows there (Dong & Yang, ICLR 2020, Fig. 7: DARTS drifts to an
all-skip cell as search goes on; Zela et al., ICLR 2020). ``BenchmarkCurve`` looks the current
genotype up at each search epoch's end through an estimator (default the ``benchmark``
lookup, ``nas/estimate/benchmark.py``), logs ``search/benchmark_<dataset>_test_acc`` and
``_valid_acc`` (rank zero; no metric where the benchmark is unavailable), keeps the curve, and
at fit end writes ``benchmark_curve.json`` and ``benchmark_curve.png`` into the run directory.
A genotype is looked up once (the answer of an unchanged genotype is reused).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from matplotlib.figure import Figure

from nas.core.io import atomic_write_json
from nas.core.plots import new_figure, save_png
from nas.estimate.base import Estimator
from nas.estimate.benchmark import DATASETS, BenchmarkLookup

CURVE_FILE = "benchmark_curve.json"
PLOT_FILE = "benchmark_curve.png"
METRIC_PREFIX = "search/benchmark_"
# Identify the file once at the top of the JSON, not in every point.
_FILE_FIELDS = ("benchmark_file", "benchmark_sha256", "benchmark_format")


def curve_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The logged metrics of one lookup: its accuracies (``<dataset>_{valid,test}_acc``)."""
    if not result.get("available"):
        return {}
    return {
        f"{METRIC_PREFIX}{k}": float(v)
        for k, v in result.items()
        if k.endswith("_acc") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def curve_figure(curve: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """Benchmark accuracy (%) per search epoch (counted from 1): per dataset the test accuracy
    (solid) and the validation accuracy (dashed, same colour); unavailable epochs are gaps."""
    fig, ax = new_figure(7.6, 3.8)
    colours = dict(zip(DATASETS, ("tab:blue", "tab:orange", "tab:green")))
    xs = [p["epoch"] + 1 for p in curve]
    for dataset in DATASETS:
        for split, style in (("test", "-"), ("valid", "--")):
            key = f"{dataset}_{split}_acc"
            ys = [float(p[key]) if p.get("available") and key in p else math.nan for p in curve]
            if not all(math.isnan(y) for y in ys):
                ax.plot(xs, ys, style, marker="o", ms=3, color=colours[dataset],
                        label=f"{dataset} {split}")  # fmt: skip
    ax.set_xlabel("search epoch", fontsize=8)
    ax.set_ylabel("benchmark accuracy (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or "benchmark accuracy of the current genotype", fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def write_curve(curve: Sequence[dict[str, Any]], run_dir: Path | str) -> dict[str, Path]:
    """``benchmark_curve.json`` (``{"benchmark_file", "benchmark_sha256", "benchmark_format",
    "curve": [point, ...]}``) and, where any point is available, ``benchmark_curve.png``."""
    run_dir = Path(run_dir)
    head: dict[str, Any] = {}
    points = []
    for point in curve:
        for k in _FILE_FIELDS:
            if k in point:
                head.setdefault(k, point[k])
        points.append({k: v for k, v in point.items() if k not in _FILE_FIELDS})
    paths = {"benchmark_curve": run_dir / CURVE_FILE}
    atomic_write_json(paths["benchmark_curve"], {**head, "curve": points})
    if any(p.get("available") for p in curve):
        hp = next(p.get("hp") for p in curve if p.get("available"))
        title = f"benchmark accuracy of the current genotype (hp={hp}, mean over seeds)"
        paths["benchmark_curve_plot"] = save_png(curve_figure(curve, title), run_dir / PLOT_FILE)
    return paths


class BenchmarkCurve(L.Callback):
    """Per search epoch: the current genotype (``pl_module.genotype()``) looked up in the
    space's benchmark (``pl_module.space``), logged and kept; at fit end, the curve's JSON and
    plot in ``run_dir``. Does nothing for a space the estimator does not apply to.

    Args:
        run_dir: where ``benchmark_curve.json`` / ``.png`` go.
        estimator: what scores a genotype (default: ``BenchmarkLookup()``: NAS-Bench-201).
    """

    def __init__(self, run_dir: Path | str, estimator: Estimator | None = None):
        self.run_dir = Path(run_dir)
        self.estimator = estimator if estimator is not None else BenchmarkLookup()
        self.curve: list[dict[str, Any]] = []
        self._answers: dict[str, dict[str, Any]] = {}
        self.epoch_offset = 0  # a staged search (P-DARTS) counts epochs on across its fits
        self.latest: dict[str, float] = {}

    def begin_stage(self, index: int, epoch_offset: int, total_epochs: int) -> None:
        self.epoch_offset = epoch_offset

    def history_fields(self) -> dict[str, float]:
        """This epoch's benchmark accuracies for ``search_history.jsonl`` (as a
        ``SearchReport`` extra, listed before it)."""
        return dict(self.latest)

    def state_dict(self) -> dict[str, Any]:
        return {"curve": self.curve}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.curve = list(state.get("curve", []))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        self.latest = {}
        if not trainer.is_global_zero or not self.estimator.applies_to(pl_module.space):
            return
        genotype = pl_module.genotype()
        text = str(genotype)
        if text not in self._answers:
            self._answers[text] = self.estimator.estimate(pl_module.space, genotype)
        result = self._answers[text]
        epoch = self.epoch_offset + trainer.current_epoch
        # A resumed fit redoes the epochs after its checkpoint: their points are replaced.
        self.curve = [p for p in self.curve if p["epoch"] < epoch]
        self.curve.append({"epoch": epoch, "step": trainer.global_step, "genotype": text, **result})
        for name, value in curve_metrics(result).items():
            pl_module.log(name, value, on_step=False, on_epoch=True, rank_zero_only=True)
            self.latest[name.removeprefix("search/")] = value

    def on_fit_end(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.is_global_zero and self.curve:
            write_curve(self.curve, self.run_dir)


def summary_fields(callbacks: Sequence[Any], run_dir: Path | str) -> dict[str, Any]:
    """``benchmark_curve`` for summary.json: the files and the last epoch's lookup, when the
    curve ran."""
    for c in callbacks:
        if isinstance(c, BenchmarkCurve) and c.curve:
            run_dir = Path(run_dir)
            last = c.curve[-1]
            out: dict[str, Any] = {"file": str(run_dir / CURVE_FILE), "epochs": len(c.curve)}
            if (run_dir / PLOT_FILE).is_file():
                out["plot"] = str(run_dir / PLOT_FILE)
            out["last"] = {k: v for k, v in last.items() if k.endswith("_acc")}
            return {"benchmark_curve": out}
    return {}
