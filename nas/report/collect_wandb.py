"""The W&B side of ``nas.report.collect``: a sweep's results as one W&B run of its own.

A multirun's jobs are separate W&B runs (one group per job: its search and retrain); what the
sweep found as a whole (the results table, accuracy against params and the accuracy-vs-cost
Pareto front) only exists after every job ended, so ``collect`` logs it to one more run of
``job_type=collect`` in the jobs' project: the figures as images, the per-configuration points
as a W&B table with a native scatter chart (interactive on the dashboard, unlike the PNG), the
jobs' W&B run ids in its config (to find them), and every file ``collect`` wrote as a
``results`` artifact. The mode follows the jobs' logger (``--wandb auto``): a sweep that logged
offline is collected offline under ``<out>/wandb/`` (``wandb sync`` uploads it), one that ran
without W&B is not sent anywhere.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

MODES = ("auto", "offline", "online", "none")


class Front(NamedTuple):
    """One Pareto figure's points: axis labels, and per configuration ``(label, n, cost,
    cost std, accuracy, accuracy std, on the front)``."""

    cost_label: str
    acc_label: str
    rows: list[tuple]


def _job_logger(job_dir: Path) -> dict[str, Any] | None:
    """The ``logger`` node of a job's resolved ``.hydra/config.yaml``, or None."""
    path = job_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    import yaml  # Hydra's record of the job, plain YAML: no OmegaConf below nas.run

    try:
        logger = yaml.safe_load(path.read_text()).get("logger")
    except Exception:  # noqa: BLE001 - an unreadable config only means: no W&B settings known
        return None
    return logger if isinstance(logger, dict) else None


def resolve(mode: str, job_dirs: list[Path]) -> tuple[str, dict[str, Any]]:
    """The W&B mode (``offline`` | ``online`` | ``none``) and the jobs' logger settings.

    ``auto``: the mode the jobs logged in (``none`` when they used another logger or W&B
    ``disabled``); an explicit mode wins, with the jobs' project and entity when they had one.
    """
    if mode not in MODES:
        raise ValueError(f"--wandb must be one of {', '.join(MODES)}, got {mode!r}.")
    settings = next(
        (lg for lg in map(_job_logger, job_dirs) if lg and lg.get("name") == "wandb"), {}
    )
    if mode == "auto":
        mode = settings.get("mode", "none") if settings else "none"
        mode = "none" if mode == "disabled" else mode
    return mode, settings


def _run_name(root: Path) -> str:
    # multirun/<date>/<time> -> collect-<date>_<time>: the sweep's own name on the dashboard.
    return "collect-" + re.sub(r"[^\w.-]+", "_", "_".join(root.resolve().parts[-2:]))


def log_collection(
    mode: str,
    settings: dict[str, Any],
    root: Path,
    out: Path,
    groups: list,
    common: list[str],
    fronts: dict[str, Front],
    files: list[Path],
) -> dict[str, Any]:
    """Logs a collected sweep (``groups``: ``collect.Group`` s) to a new W&B run; returns
    ``{run_id, mode, dir}``."""
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    jobs = [j for g in groups for j in g.jobs]
    config = {
        "multirun_dir": str(root),
        "common_overrides": common,
        "configurations": [g.label for g in groups],
        "jobs": [
            {"config": j.label, "seed": j.seed, "dir": str(j.path), "wandb": _job_runs(j.path)}
            for j in jobs
        ],
    }
    run = wandb.init(
        project=settings.get("project") or "oneshot-nas",
        entity=settings.get("entity"),
        dir=str(out),
        mode=mode,
        job_type="collect",
        name=_run_name(root),
        tags=list(settings.get("tags") or []),
        config=config,
    )
    try:
        log: dict[str, Any] = {}
        for path in files:
            if path.suffix == ".png":
                log[f"figures/{path.stem}"] = wandb.Image(str(path), caption=path.name)
        log["results"] = wandb.Table(**_results_table(out / "results.csv"))
        for cost, front in fronts.items():
            c, a = front.cost_label, front.acc_label
            table = wandb.Table(
                columns=["configuration", "n", c, f"{c} std", a, f"{a} std", "on front"],
                data=[list(row) for row in front.rows],
            )
            log[f"pareto/{cost}/points"] = table
            log[f"pareto/{cost}/scatter"] = wandb.plot.scatter(
                table, c, a, title=f"{a} vs {c} per configuration"
            )
            run.summary[f"pareto/{cost}/front_size"] = sum(row[-1] for row in front.rows)
        run.log(log)
        run.summary.update({"configurations": len(groups), "jobs": len(jobs)})
        artifact = wandb.Artifact(_run_name(root).replace("collect-", "results-"), type="results")
        for path in files:
            artifact.add_file(str(path))
        run.log_artifact(artifact)
        fields = {"run_id": run.id, "mode": mode, "dir": str(Path(run.dir).parent)}
    finally:
        run.finish()
    return fields


def _results_table(path: Path) -> dict[str, Any]:
    """``results.csv`` as W&B table columns and rows: the label and seed columns as text,
    the statistics as numbers (empty: None), so each column keeps one type."""
    import csv

    with path.open(newline="") as f:
        header, *rows = list(csv.reader(f))
    text = {"config", "seeds"}

    def value(column: str, cell: str) -> Any:
        return cell if column in text else (float(cell) if cell else None)

    return {"columns": header, "data": [[value(c, v) for c, v in zip(header, r)] for r in rows]}


def _job_runs(job_dir: Path) -> dict[str, str]:
    """The job's W&B run ids per stage, from its ``summary.json`` (empty without W&B)."""
    try:
        wandb = json.loads((job_dir / "summary.json").read_text()).get("wandb") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {stage: run.get("run_id") for stage, run in wandb.items() if isinstance(run, dict)}
