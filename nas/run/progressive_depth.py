"""P-DARTS' progressive depth: the search as successive stages of growing depth (Chen, Xie, Wu,
Tian, "Progressive Differentiable Architecture Search: Bridging the Depth Gap between Search and
Evaluation", ICCV 2019, sec. 3.2).

``strategy.stages`` lists the stages (``nas.run.schema.DepthStage``). Each stage builds a fresh
supernet of ``layers`` cells (NAS-Bench-201: N cells per stage) and ``search_space.C +
add_width`` channels, with new weights and new α (as the official code does: chenxin061/pdarts
``train_search.py`` builds a new ``Network`` per stage, whose ``_initialize_alphas`` draws α
again), restricted to the ops still kept on each edge; it trains for ``epochs`` (None:
``trainer.max_epochs``, the code's ``--epochs`` per stage) as its own Lightning fit, with its
own cosine schedule, α warm-up (``strategy.arch_start_epoch``, counted within the stage) and
skip dropout rate. After every stage but the last, each edge keeps its ``keep`` strongest ops by
that stage's probabilities (search space approximation, the code's ``get_min_k``: ``none`` is an
op like the others unless ``drop_none``); the last stage's α gives the genotype through the
strategy's selection rule (``darts_top2_max_skip``).

The pruned op sets travel as the strategy's pruning masks (a ``ProgressivePruning`` modifier in
``strategy.modifiers``): pruned ops are not computed, the mixing and the probabilities are
renormalised over the kept ops (the softmax over the stage's columns in the official code), and
``alphas.json`` saves them as ``op_masks``, so ``stage=discretize`` derives the same genotype.

Checkpoints: ``<run dir>/checkpoints/search/stage<i>/last.ckpt`` per stage; each records its
stage (``progressive_depth`` key). When a stage ends, ``<run dir>/stages.json`` records it and
the masks it leaves. Resuming (``resume=auto``) skips the stages ``stages.json`` records, and
resumes the first unfinished one from its own ``last.ckpt`` (or starts it fresh). Within a stage
the resume is as exact as any search's (weights, α, optimizers, RNG, data order, strategy state);
a stage starts from ``seed + i`` (global RNG), its config and the masks alone, so a stage begun
after a resume is the one an uninterrupted run begins. ``resume=<path>`` of a stage's
checkpoint resumes that stage (its masks come with the checkpoint's strategy state).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nas.core.checkpoints import differences
from nas.core.io import atomic_write_json, read_json
from nas.core.log import get_logger
from nas.run import builders
from nas.run.resume import run_identity
from nas.run.resume_logs import ResumableCSVLogger
from nas.search.benchmark_curve import BenchmarkCurve
from nas.search.report import SearchReport
from nas.strategies.modifiers.op_pruning import ProgressivePruning

log = get_logger(__name__)

STAGES_FILE = "stages.json"
STAGE_KEY = "progressive_depth"  # the checkpoint's stage record


def stage_name(index: int) -> str:
    """The checkpoint folder of stage ``index`` under ``<run dir>/checkpoints/``."""
    return f"search/stage{index}"


def check_stages(cfg: DictConfig) -> None:
    """Refuses stage lists that cannot run, naming the stage and the field (and, with stages,
    a space whose decisions change with the depth or a keep above a row's op count)."""
    stages = cfg.strategy.stages
    if stages:
        check_keep(cfg)
    for i, st in enumerate(stages):
        last = i == len(stages) - 1
        if st.layers < 1:
            raise ValueError(f"strategy.stages[{i}].layers must be >= 1, got {st.layers}.")
        if st.epochs is not None and st.epochs < 1:
            raise ValueError(f"strategy.stages[{i}].epochs must be >= 1 or null, got {st.epochs}.")
        if last and st.keep is not None:
            raise ValueError(
                f"strategy.stages[{i}].keep must be null: the last stage is not pruned, its α "
                f"gives the genotype through the selection rule (got keep={st.keep})."
            )
        if not last and (st.keep is None or st.keep < 1):
            raise ValueError(
                f"strategy.stages[{i}].keep must be >= 1 (ops kept per edge for stage {i + 1}), "
                f"got {st.keep}."
            )
        if i and not last and st.keep >= stages[i - 1].keep:
            raise ValueError(
                f"strategy.stages[{i}].keep={st.keep} must be below the previous stage's "
                f"{stages[i - 1].keep}: each stage prunes."
            )


def check_keep(cfg: DictConfig) -> None:
    """Refuses a stage that keeps more ops per edge than a row of the space has (a ``module``
    space's decisions may have only two choices), before any stage runs."""
    space = builders.space_from_config(cfg)
    for i in range(len(cfg.strategy.stages)):
        shape = builders.space_from_config(stage_config(cfg, i)).alpha_shape
        if shape != space.alpha_shape:
            raise ValueError(
                f"strategy.stages[{i}].layers={cfg.strategy.stages[i].layers}: in "
                f"search_space={space.name} the depth changes the decisions (α {list(shape)} "
                f"instead of {list(space.alpha_shape)}: one row per layer), so P-DARTS' pruned "
                "ops cannot carry over from stage to stage. P-DARTS applies to spaces whose "
                "depth repeats the same decisions (darts, nb201, mbconv, module models that "
                "share labels across layers)."
            )
    fewest = min(range(len(space.edges)), key=lambda r: len(space.allowed_ops(r)))
    n = len(space.allowed_ops(fewest))
    for i, st in enumerate(cfg.strategy.stages):
        if st.keep is not None and st.keep > n:
            raise ValueError(
                f"strategy.stages[{i}].keep={st.keep}: search_space={space.name} has a row with "
                f"only {n} ops (α row {fewest}, edge {list(space.edges[fewest])}); P-DARTS' "
                f"pruning keeps at most {n} per edge there. Give every stage keep <= {n}."
            )


def stage_config(cfg: DictConfig, index: int) -> DictConfig:
    """``cfg`` with stage ``index``'s depth, width and epochs (what its checkpoints stamp)."""
    st = cfg.strategy.stages[index]
    out = copy.deepcopy(cfg)
    out.search_space.layers = st.layers
    if st.add_width:
        out.search_space.C = cfg.search_space.C + st.add_width
    if st.epochs is not None:
        out.trainer.max_epochs = st.epochs
    return out


def pruning_modifier(strategy) -> ProgressivePruning:
    for m in strategy.modifiers:
        if isinstance(m, ProgressivePruning):
            return m
    raise ValueError(
        f"strategy={strategy.name} has strategy.stages but no pruning modifier to carry the "
        "per-edge op masks from stage to stage: add "
        "{_target_: nas.strategies.modifiers.ProgressivePruning, at: [], keep: []} to "
        "strategy.modifiers."
    )


def prune(
    probs: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    keep: int,
    ops: tuple[str, ...],
    drop_none: bool = False,
) -> dict[str, torch.Tensor]:
    """Per cell type, the ``[edges, ops]`` masks that keep each edge's ``keep`` strongest ops
    among those ``masks`` still keeps (all, for a cell type it lacks); with ``drop_none``,
    ``none`` goes first (the code's ``get_min_k_no_zero``)."""
    out = {}
    for cell, p in probs.items():
        p = p.detach().double().cpu()
        kept = masks[cell].cpu() if cell in masks else torch.ones_like(p, dtype=torch.bool)
        if keep > int(kept.sum(-1).min()):
            raise ValueError(
                f"cannot keep {keep} ops per edge of the {cell} cell: some edges have only "
                f"{int(kept.sum(-1).min())} left."
            )
        score = p.masked_fill(~kept, -2.0)
        if drop_none and "none" in ops:
            score[:, ops.index("none")] = torch.where(kept[:, ops.index("none")], -1.0, -2.0)
        top = score.topk(keep, dim=-1).indices
        out[cell] = torch.zeros_like(kept).scatter_(-1, top, True)
    return out


class StageStamp(L.Callback):
    """Writes the stage into every checkpoint; refuses to resume a stage from another's."""

    def __init__(self, index: int, count: int, layers: int):
        self.record = {"stage": index, "stages": count, "layers": layers}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[STAGE_KEY] = dict(self.record)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(STAGE_KEY)
        if saved is not None and saved.get("stage") != self.record["stage"]:
            raise ValueError(
                f"this checkpoint is of search stage {saved.get('stage')}, not of stage "
                f"{self.record['stage']} it is resumed into."
            )


def _masks_json(masks: dict[str, torch.Tensor]) -> dict[str, list]:
    return {c: m.int().tolist() for c, m in masks.items()}


def _read_progress(cfg: DictConfig, run_dir: Path) -> tuple[int, list[dict], dict]:
    """(first stage to run, records of the finished ones, their masks) under ``cfg.resume``."""
    resume = cfg.get("resume")
    if resume and resume != "auto":  # a stage's checkpoint: that stage, masks from its state
        ckpt = torch.load(resume, map_location="cpu", weights_only=False)
        record = ckpt.get(STAGE_KEY) if isinstance(ckpt, dict) else None
        if record is None:
            raise ValueError(
                f"resume={resume!r} is not a checkpoint of a staged (strategy.stages) search: "
                "it has no stage record. Use resume=auto, or a checkpoints/search/stage<i>/ file."
            )
        return int(record["stage"]), [], {}
    path = run_dir / STAGES_FILE
    if resume != "auto" or not path.is_file():
        return 0, [], {}
    progress = read_json(path, what="stages file")
    diff = differences(progress.get("identity", {}), run_identity(cfg, "search"))
    if diff:
        raise ValueError(
            f"{path} records the stages of a different run; refusing to resume. Differences: "
            + "; ".join(diff[:10])
        )
    done = progress.get("completed", [])
    last = len(cfg.strategy.stages) - 1
    done = done[:last]  # the last stage is always (re)entered: its checkpoint holds the result
    masks = {}
    if done:
        masks = {c: torch.tensor(m, dtype=torch.bool) for c, m in done[-1]["masks"].items()}
    return len(done), done, masks


def fit_stages(
    cfg: DictConfig, run_dir: Path, logger, callbacks: list
) -> tuple[Any, L.Trainer, Any]:
    """Runs the stages (each fit with ``callbacks``, the search report among them); returns the
    last stage's (module, trainer, datamodule)."""
    check_stages(cfg)
    stages = cfg.strategy.stages
    run_dir = Path(run_dir)
    first, done, masks = _read_progress(cfg, run_dir)
    if first:
        log.info(
            f"search: stages 0-{first - 1} done ({run_dir / STAGES_FILE}); resuming stage {first}"
        )
    module = trainer = data = None
    epochs = [stage_config(cfg, i).trainer.max_epochs for i in range(len(stages))]
    reports = [c for c in callbacks if isinstance(c, (SearchReport, BenchmarkCurve))]
    for i in range(first, len(stages)):
        for report in reports:  # history and figures count epochs on across the stages
            report.begin_stage(i, sum(epochs[:i]), sum(epochs))
        stage_logger = logger.for_version(stage_name(i)) if isinstance(
            logger, ResumableCSVLogger
        ) else logger  # fmt: skip
        st, scfg = stages[i], stage_config(cfg, i)
        L.seed_everything(cfg.seed + i, workers=True, verbose=False)
        space = builders.space_from_config(scfg)
        module = builders.search_module(scfg, space)
        pruning = pruning_modifier(module.strategy)
        pruning.masks = {c: m.clone() for c, m in masks.items()}
        module.arch.op_masks = dict(pruning.masks)
        stage = OmegaConf.to_object(st)  # a DepthStage (nas.run.schema), not the config node
        for m in module.strategy.modifiers:
            m.set_stage(i, stage)
        data = builders.search_data(scfg)
        stamp = StageStamp(i, len(stages), st.layers)
        trainer = builders.trainer(
            scfg, run_dir, stage_name(i), stage_logger, callbacks=[*callbacks, stamp]
        )
        ckpt = builders.resume_checkpoint(scfg, run_dir, stage_name(i)) if i == first else None
        log.info(
            f"search stage {i + 1}/{len(stages)}: {st.layers} cells, C={scfg.search_space.C}, "
            f"{trainer.max_epochs} epochs, ops per edge {_ops_per_edge(module)}, "
            f"skip dropout {st.skip_dropout}"
        )
        trainer.fit(module, datamodule=data, ckpt_path=ckpt)
        if trainer.interrupted:
            return module, trainer, data
        module.arch.op_masks = dict(pruning.masks)  # as resumed, if it was
        if i < len(stages) - 1:
            masks = prune(module.probabilities(), pruning.masks, st.keep, space.ops, st.drop_none)
            done = [*done, {"stage": i, "layers": st.layers, "masks": _masks_json(masks)}]
            if trainer.is_global_zero:
                identity = run_identity(cfg, "search")
                atomic_write_json(run_dir / STAGES_FILE, {"identity": identity, "completed": done})
    return module, trainer, data


def _ops_per_edge(module) -> int:
    masks = module.arch.op_masks
    if not masks:
        return len(module.space.ops)
    return int(next(iter(masks.values())).sum(-1).max())
