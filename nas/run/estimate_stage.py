"""``stage=estimate``: zero-cost proxies (and a predictor) score many architectures without
training them (``nas/estimate``).

The architectures come from ``estimate.archs`` (a file, one per line) or ``estimate.sample``
(N random ones, or ``all`` where the space enumerates: NAS-Bench-201's 15,625). Each row of
``estimates.csv`` is written as soon as it is scored, so a stopped job loses nothing:
``resume=auto`` in the same run directory scores only the architectures missing from the file
(rows do not depend on the order: ``nas.estimate.scoring``). Non-finite scores are written as
``nan`` / ``inf`` and counted in ``summary.json``; a proxy's ranking leaves them out.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from nas.core.checkpoints import differences
from nas.core.genotype import save_genotype
from nas.core.io import atomic_write_json
from nas.core.log import get_logger
from nas.estimate.archs import Arch, all_archs, read_archs, sample_archs
from nas.estimate.proxies import PROXIES
from nas.estimate.scoring import (
    COST_COLUMNS,
    ArchScorer,
    check_proxies,
    needs_data,
    score_all,
)
from nas.run import builders
from nas.run.devices import runs_on_cpu
from nas.run.settings import data_settings
from supernet.spaces.base import SearchSpace

log = get_logger(__name__)

ESTIMATES_FILE = "estimates.csv"
STATE_FILE = "estimates_state.json"  # what the rows were scored under (resume checks it)
FIGURES_DIR = "figures/estimate"
LOG_EVERY_S = 30.0
TOP_DIR = "top"
DATA_FREE = tuple(sorted(n for n, p in PROXIES.items() if p.data_free))


def check_settings(cfg: DictConfig, space: SearchSpace) -> None:
    """``estimate.*`` values, checked before any data is read."""
    from nas.run import black_box_stage, estimate_truth

    e = cfg.estimate
    if e.batches < 0 or e.batch_size < 1:
        raise ValueError(
            f"estimate.batches={e.batches}, estimate.batch_size={e.batch_size}: need batches "
            ">= 0 (0 only with data-free proxies) and batch_size >= 1."
        )
    estimate_truth.check_settings(cfg)
    if e.search is not None:
        black_box_stage.check_settings(cfg, space)
        return
    proxies = check_proxies(list(e.proxies))
    if needs_data(proxies) and e.batches == 0:
        raise ValueError(
            f"estimate.batches=0, but the proxies {[p for p in proxies if p not in DATA_FREE]} "
            "read data: give estimate.batches >= 1, or use only data-free proxies "
            f"({', '.join(DATA_FREE)})."
        )
    sample_count(e.sample)
    if e.archs is None and e.sample is None:
        raise ValueError(
            "stage=estimate needs architectures: estimate.archs=<file, one per line> or "
            "estimate.sample=<N | all>."
        )
    if e.sample == "all" and e.archs is None:
        space.genotype_count() or list(space.all_genotypes())  # too large: the space says so
    if e.workers < 1:
        raise ValueError(f"estimate.workers={e.workers}: the number of processes, >= 1.")
    if e.workers > 1 and not runs_on_cpu(cfg) and torch.cuda.is_available():
        raise ValueError(
            f"estimate.workers={e.workers}: several processes score on the CPU only; on a GPU "
            "use estimate.workers=1."
        )
    if e.top_k < 0:
        raise ValueError(f"estimate.top_k={e.top_k}: the number of architectures to keep, >= 0.")
    ranks = [*proxies, *COST_COLUMNS, *(["predictor"] if e.predictor else [])]
    if e.rank_by is not None and e.rank_by not in ranks:
        raise ValueError(
            f"estimate.rank_by={e.rank_by!r}: rank by one of this run's columns: "
            f"{', '.join(ranks)}."
        )


def sample_count(value: Any) -> int | str | None:
    if value is None or value == "all":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"estimate.sample={value!r}: give a number of random architectures >= 1, or all "
            "(every architecture of an enumerable space: nb201)."
        )
    return value


def architectures(cfg: DictConfig, space: SearchSpace) -> list[Arch]:
    e = cfg.estimate
    if e.archs is not None:
        return read_archs(e.archs, space)
    if e.sample == "all":
        return list(all_archs(space))
    return sample_archs(space, int(e.sample), cfg.seed)


def data_batches(cfg: DictConfig, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``estimate.batches`` training batches of ``estimate.batch_size`` images
    (shuffled with the run seed, normalised, not augmented): every architecture sees the same."""
    from nas.data.modules import RetrainDataModule

    e = cfg.estimate
    data = RetrainDataModule(data_settings(cfg), batch_size=e.batch_size, seed=cfg.seed)
    data.prepare_data()
    data.setup("fit")
    return data.first_batches(data.train_dataloader(), e.batches, device)


def make_scorer(cfg: DictConfig, proxies: list[str], batches: list, device: str) -> ArchScorer:
    """The scorer of this run's child networks (module level: a worker process builds its own
    from these picklable arguments)."""
    space = builders.space_from_config(cfg)
    dev = torch.device(device)
    return ArchScorer(
        lambda g: builders.child_network(cfg, space, g),
        proxies, cfg.data.input_shape, cfg.data.num_classes,
        [(x.to(dev), y.to(dev)) for x, y in batches], cfg.seed, dev, cost_lookup(cfg, space),
    )  # fmt: skip


def cost_lookup(cfg: DictConfig, space: SearchSpace):
    """params and MACs of a genotype's child from the space's cost tables (a lookup instead of
    a forward pass per architecture), or None for a space without tables."""
    if type(space).child_op_pattern is None:
        return None
    model = builders.config_cost_model(cfg, space)
    return lambda g: {
        "params": int(model.genotype_cost(space, g, "params")),
        "macs": int(model.genotype_cost(space, g, "macs")),
    }


def identity(cfg: DictConfig, proxies: list[str]) -> dict[str, Any]:
    """What a row's scores depend on: resuming under anything else is refused."""
    keys = ("seed", "search_space", "data", "retrain")
    out = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in keys
    }
    e = cfg.estimate
    out["estimate"] = {"proxies": proxies, "batches": e.batches, "batch_size": e.batch_size}
    return out


class RowWriter:
    """``estimates.csv``, appended row by row: each row is flushed to the OS as it is written
    (a killed process loses none), synced to the disk every few seconds and at the end (a
    machine that goes down loses at most those seconds); a resumed job keeps the rows there."""

    def __init__(self, path: Path, columns: list[str], done: int):
        self.path = path
        new = done == 0
        self.file = open(path, "w" if new else "a", newline="")  # noqa: SIM115 - closed in close()
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(columns)
        self.synced = time.monotonic()

    def write(self, values: list[Any]) -> None:
        self.writer.writerow(values)
        self.file.flush()
        if time.monotonic() - self.synced > 5.0:
            self.sync()

    def sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.synced = time.monotonic()

    def close(self) -> None:
        self.sync()
        self.file.close()


def read_done(path: Path, columns: list[str]) -> dict[str, list[str]]:
    """Rows already in ``estimates.csv`` (arch -> row); a last line cut off by a kill is
    dropped (and the file truncated to the rows kept)."""
    if not path.is_file():
        return {}
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        path.write_text(text)
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return {}
    if rows[0] != columns:
        raise ValueError(
            f"resume=auto: {path} has the columns {rows[0]}, this run writes {columns}; use a "
            "new run directory (hydra.run.dir=...) for other proxies."
        )
    return {row[0]: row for row in rows[1:] if len(row) == len(columns)}


def check_resume(cfg: DictConfig, run_dir: Path, stamp: dict[str, Any]) -> bool:
    """Whether the rows in ``run_dir`` are kept (``resume=auto`` under the same identity)."""
    state = run_dir / STATE_FILE
    if cfg.resume not in (None, "auto"):
        raise ValueError(
            f"resume={cfg.resume!r}: stage=estimate resumes only as resume=auto (the rows of "
            f"{ESTIMATES_FILE} in the run directory)."
        )
    if cfg.resume != "auto" or not state.is_file():
        return False
    diff = differences(json.loads(state.read_text()), stamp)
    if diff:
        raise ValueError(
            f"resume=auto: the rows in {run_dir / ESTIMATES_FILE} were scored under another "
            f"config; refusing to mix them. Differences: {'; '.join(diff[:10])}."
        )
    return True


def estimate(cfg: DictConfig, run_dir: Path, space: SearchSpace, device: torch.device) -> dict:
    start = time.perf_counter()
    e = cfg.estimate
    if e.search is not None:
        from nas.run import black_box_stage

        uses = black_box_stage.uses_data(cfg) and e.batches
        batches = data_batches(cfg, device) if uses else []
        fields = black_box_stage.search(cfg, run_dir, space, device, batches)
        return {**fields, "estimate_wall_time_s": time.perf_counter() - start}
    proxies = check_proxies(list(e.proxies))
    archs = architectures(cfg, space)
    columns = ["arch", *proxies, *COST_COLUMNS]
    columns = list(dict.fromkeys(columns))  # a proxy named like a cost column is that column
    stamp = identity(cfg, proxies)
    path = run_dir / ESTIMATES_FILE
    done = read_done(path, columns) if check_resume(cfg, run_dir, stamp) else {}
    atomic_write_json(run_dir / STATE_FILE, stamp)
    batches = data_batches(cfg, device) if needs_data(proxies) and e.batches else []
    todo = [a for a in archs if a.text not in done]
    data = f"{len(batches)} batch(es) of {e.batch_size} images" if batches else "no data"
    workers = f", {e.workers} processes" if e.workers > 1 else ""
    log.info(
        f"estimate: {len(archs):,} architectures of {space.name} ({len(done):,} already in "
        f"{path.name}), proxies {', '.join(proxies)}, {data}, on {device}{workers}"
    )
    args = (cfg, proxies, [(x.cpu(), y.cpu()) for x, y in batches], str(device))
    rows = score_all(todo, make_scorer, args, e.workers)
    writer = RowWriter(path, columns, len(done))
    last_log, begun = time.monotonic(), time.perf_counter()
    try:
        for k, row in enumerate(rows, start=1):
            values = {**row.scores, **row.costs}  # params: the count, an int
            writer.write([row.arch, *(_text(values[c]) for c in columns[1:])])
            if time.monotonic() - last_log > LOG_EVERY_S:
                rate = k / (time.perf_counter() - begun)
                log.info(f"estimate: {k:,}/{len(todo):,} ({rate:.1f} architectures/s)")
                last_log = time.monotonic()
    finally:
        writer.close()
    elapsed = time.perf_counter() - begun
    table = read_table(path)
    fields = {
        "estimates_file": str(path),
        "archs": len(table["arch"]),
        "proxies": proxies,
        "scored_now": len(todo),
        "resumed_rows": len(done),
        "archs_per_s": len(todo) / elapsed if todo else None,
        "workers": e.workers,
        "estimate_wall_time_s": time.perf_counter() - start,
        "estimate_batches": len(batches),
        "estimate_batch_size": e.batch_size if batches else 0,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "proxy_stats": {name: proxy_stats(table["arch"], table[name]) for name in columns[1:]},
    }
    if e.figures:
        fields["figures"] = figures(table, columns[1:], run_dir / FIGURES_DIR)
    from nas.run import estimate_truth

    if e.truth is not None:
        fields.update(estimate_truth.truth_fields(cfg, run_dir, path))
    predicted = None
    if e.predictor is not None:
        keyed = {**table, "keys": [str(a.genotype) for a in archs_by_text(archs, table)]}
        fields.update(estimate_truth.predict_fields(cfg, run_dir, space, archs, keyed))
        predicted = estimate_truth.read_predictions(run_dir)
    if e.top_k:
        fields["top"] = funnel(cfg, run_dir, space, archs, table, predicted)
    fields["estimate_wall_time_s"] = time.perf_counter() - start
    return fields


def archs_by_text(archs: list[Arch], table: dict[str, list]) -> list[Arch]:
    """The architectures in the order of ``estimates.csv``'s rows (a resumed file keeps its
    first rows' order)."""
    by_text = {a.text: a for a in archs}
    return [by_text[t] for t in table["arch"]]


def funnel(cfg, run_dir: Path, space: SearchSpace, archs: list[Arch], table, predicted) -> dict:
    """The ``estimate.top_k`` architectures by ``estimate.rank_by`` as genotype files in
    ``top/`` (best first), and the multirun that retrains them into one collected table."""
    e = cfg.estimate
    by = e.rank_by or list(e.proxies)[0]
    scores = predicted if by == "predictor" else dict(zip(table["arch"], table[by], strict=True))
    ranked = sorted(
        (a for a in archs if math.isfinite(scores.get(a.text, math.nan))),
        key=lambda a: -scores[a.text],
    )[: e.top_k]
    (run_dir / TOP_DIR).mkdir(parents=True, exist_ok=True)
    paths = []
    for rank, arch in enumerate(ranked, start=1):
        paths.append(str(run_dir / TOP_DIR / f"{rank:03d}.json"))
        save_genotype(arch.genotype, paths[-1])
    command = (
        f"python train.py -m stage=retrain search_space={space.name} data={cfg.data.name} "
        f"genotype={','.join(paths)}"
    )
    log.info(f"top {len(paths)} by {by} in {run_dir / TOP_DIR}; retrain them with: {command}")
    return {"rank_by": by, "files": paths, "archs": [a.text for a in ranked], "retrain": command}


def _text(value: float | int) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def read_table(path: Path) -> dict[str, list]:
    """``estimates.csv`` as columns: ``arch`` texts, every other column floats."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    table: dict[str, list] = {"arch": [r[0] for r in body]}
    for j, name in enumerate(header[1:], start=1):
        table[name] = [float(r[j]) for r in body]
    return table


def proxy_stats(archs: list[str], values: list[float]) -> dict[str, Any]:
    """Finite count, non-finite count (never ranked), mean, and the best-scored architecture."""
    good = [(v, a) for v, a in zip(values, archs, strict=True) if math.isfinite(v)]
    out: dict[str, Any] = {"finite": len(good), "non_finite": len(values) - len(good)}
    if good:
        best = max(good, key=lambda t: t[0])
        out.update(
            {
                "mean": sum(v for v, _ in good) / len(good),
                "min": min(v for v, _ in good),
                "max": best[0],
                "best_arch": best[1],
            }
        )
    return out


def figures(table: dict[str, list], columns: list[str], out_dir: Path) -> dict[str, str]:
    """Per proxy a PNG: the histogram of its finite scores, and the scores against the
    parameter count (the baseline every proxy is compared with). A score spanning more than
    three decades (synflow: 10^20 and more) is drawn as log10, its zeros counted apart."""
    import numpy as np

    from nas.core.plots import new_figure, save_png, spans_decades
    from nas.estimate.predictors import rank_correlations

    params = np.array(table["params"], dtype=float) / 1e6
    paths = {}
    for name in columns:
        values = np.array(table[name], dtype=float)
        ok = np.isfinite(values)
        shown, label, notes = values, name, []
        if (~ok).any():
            notes.append(f"{int((~ok).sum())} non-finite left out")
        positive = ok & (values > 0)
        if positive.any() and (values[ok] >= 0).all() and spans_decades(values[positive]):
            if (ok & (values == 0)).any():
                notes.append(f"{int((ok & (values == 0)).sum())} zero left out")
            ok, shown, label = positive, np.log10(np.where(positive, values, 1.0)), f"log10 {name}"
        fig, (hist, scatter) = new_figure(9.0, 3.6, ncols=2)
        hist.hist(shown[ok], bins=min(50, max(5, int(ok.sum() ** 0.5))), color="#4c72b0")
        hist.set_xlabel(label)
        hist.set_ylabel("architectures")
        note = f" ({', '.join(notes)})" if notes else ""
        hist.set_title(f"{name}: {int(ok.sum())} architectures{note}", fontsize=9)
        scatter.scatter(params[ok], shown[ok], s=6, alpha=0.6, color="#dd8452")
        scatter.set_xlabel("params (M)")
        scatter.set_ylabel(label)
        if name != "params":
            rho = rank_correlations(values[ok], params[ok])[0]
            scatter.set_title(f"{name} against params (Spearman ρ = {rho:.2f})", fontsize=9)
        fig.tight_layout()
        paths[name] = str(save_png(fig, out_dir / f"{name}.png"))
    return paths
