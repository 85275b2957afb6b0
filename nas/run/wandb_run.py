"""The W&B side of a run: one W&B run per stage, grouped, with results as artifacts.

A search and the retrain of its genotype are two W&B runs of one group (``job_type`` search /
retrain), so the dashboard shows them together; the retrain run's config names the search run
(``search_run``) and, online, it uses the search's genotype artifact, which draws the lineage
search → genotype → retrain. Results travel as versioned artifacts named by what defines them
(``genotype-<space>-<strategy>-<data>-seed<seed>``: a rerun of the same config is its next
version): the alphas, the genotype, the final checkpoints and the exported child network
(``exported-...``: ``model.pt``, ``model.onnx``, ``model.json``, what a deployment pulls). Offline (the default) the run,
its media and artifacts stay in ``<run dir>/wandb/`` until ``wandb sync``; offline W&B cannot
use artifacts, so there the link is the group and the config entry only.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

WANDB_MODES = ("offline", "online", "disabled")


def new_group() -> str:
    # uuid, not a seeded RNG: naming the group must not move the run's random streams.
    return f"nas-{uuid.uuid4().hex[:8]}"


def make_logger(
    cfg: DictConfig,
    run_dir: Path,
    job_type: str,
    group: str | None = None,
    search_run: dict[str, Any] | None = None,
):
    """A Lightning ``WandbLogger`` for one stage, writing under ``<run dir>/wandb/``."""
    from lightning.pytorch.loggers import WandbLogger

    lg = cfg.logger
    if lg.mode not in WANDB_MODES:
        raise ValueError(f"logger.mode must be one of {', '.join(WANDB_MODES)}, got {lg.mode!r}.")
    os.environ.setdefault("WANDB_SILENT", "true")
    config = OmegaConf.to_container(cfg, resolve=True)
    if search_run:
        config["search_run"] = search_run
    name = f"{job_type}-{cfg.strategy.name}-{cfg.search_space.name}-{cfg.data.name}-s{cfg.seed}"
    run_id, group = stage_run_id(run_dir, job_type, group, resuming=bool(cfg.get("resume")))
    logger = WandbLogger(
        id=run_id,
        resume="allow",
        project=lg.project,
        entity=lg.entity,
        save_dir=str(run_dir),
        mode=lg.mode,
        tags=list(lg.tags),
        name=name,
        group=group,
        job_type=job_type,
        config=config,
    )
    # Lightning always passes wandb.init(anonymous=None), on which wandb prints a deprecation
    # warning ("the anonymous setting has no effect") into every run's console.
    logger._wandb_init.pop("anonymous", None)
    return logger


RUNS_FILE = "runs.json"  # in <run dir>/wandb/: each stage's W&B run id and group


def stage_run_id(
    run_dir: Path, job_type: str, group: str | None, resuming: bool
) -> tuple[str, str]:
    """(run id, group) of a stage's W&B run: on a resume (``resume=...``) the interrupted
    stage's, read from ``<run dir>/wandb/runs.json``, so the resumed process continues the same
    W&B run instead of leaving an orphan beside a new one; else a new id, recorded there."""
    path = Path(run_dir) / "wandb" / RUNS_FILE
    runs = json.loads(path.read_text()) if path.is_file() else {}
    if resuming and job_type in runs:
        return runs[job_type]["id"], group or runs[job_type]["group"]
    # uuid, not a seeded RNG: naming the run must not move the run's random streams.
    run_id, group = uuid.uuid4().hex[:8], group or new_group()
    if os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0":
        from nas.core.io import atomic_write_json

        atomic_write_json(path, {**runs, job_type: {"id": run_id, "group": group}})
    return run_id, group


def run_fields(logger) -> dict[str, Any]:
    """What ``summary.json`` records of a stage's W&B run (to find it, and to link to it)."""
    run = logger.experiment
    return {
        "run_id": run.id,
        "group": run.group,
        "job_type": run.job_type,
        "mode": run.settings.mode,
        "dir": str(Path(run.dir).parent),
    }


def artifact_name(kind: str, cfg: DictConfig) -> str:
    return f"{kind}-{cfg.search_space.name}-{cfg.strategy.name}-{cfg.data.name}-seed{cfg.seed}"


def log_artifacts(
    logger, cfg: DictConfig, files: dict[str, tuple[str, Path | list[Path]]]
) -> dict[str, str]:
    """Logs ``{kind: (artifact type, file or files)}`` as versioned artifacts (the files that
    exist; none: no artifact); returns their names."""
    import wandb

    names = {}
    for kind, (type_, paths) in files.items():
        present = [Path(p) for p in (paths if isinstance(paths, list) else [paths])]
        present = [p for p in present if p.is_file()]
        if not present:
            continue
        artifact = wandb.Artifact(artifact_name(kind, cfg), type=type_)
        for path in present:
            artifact.add_file(str(path))
        logger.experiment.log_artifact(artifact)
        names[kind] = artifact.name
    return names


def update_summary(logger, fields: dict[str, Any]) -> None:
    """Puts the stage's scalar results into the W&B run's summary."""
    summary = logger.experiment.summary
    for key, value in fields.items():
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            summary[key] = value


def log_estimates(logger, path: Path, fields: dict[str, Any], max_rows: int = 20_000) -> None:
    """``stage=estimate``'s ``estimates.csv`` as a W&B table (its first ``max_rows`` rows: a
    table of all 15,625 NB201 cells stays usable), the proxies' figures as images, and the
    scalar results in the run's summary."""
    import csv

    import wandb

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1 : max_rows + 1]
    data = [[r[0], *(float(v) for v in r[1:])] for r in body]
    run = logger.experiment
    run.log({"estimate/table": wandb.Table(columns=header, data=data)})
    for name, png in fields.get("figures", {}).items():
        run.log({f"estimate/{name}": wandb.Image(png)})
    update_summary(logger, fields)


def use_search_genotype(logger, search_run: dict[str, Any] | None) -> None:
    """Online: declares the search's genotype artifact as this run's input (lineage)."""
    if not search_run or logger.experiment.settings.mode != "online":
        return
    name = search_run.get("artifacts", {}).get("genotype")
    if name:
        logger.experiment.use_artifact(f"{name}:latest")


def search_run_of(genotype_spec: str | None) -> dict[str, Any] | None:
    """The W&B run of the search that wrote a ``genotype.json`` (read from the
    ``summary.json`` beside it), or None for zoo genotypes and files from elsewhere."""
    if not genotype_spec:
        return None
    summary = Path(genotype_spec).parent / "summary.json"
    if not Path(genotype_spec).is_file() or not summary.is_file():
        return None
    try:
        wandb = json.loads(summary.read_text()).get("wandb", {}).get("search")
    except (OSError, ValueError, AttributeError):
        return None
    return wandb or None


def finish(logger) -> None:
    logger.experiment.finish()
