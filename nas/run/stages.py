"""The stages of a run: search, discretize, retrain, profile, latency (the cost model's latency
table, ``nas/hardware/latency.py``), estimate (zero-cost proxies over many architectures,
``nas/run/estimate_stage.py``), and the pipeline of the first three.

Each stage returns the fields it contributes to ``summary.json``; ``train.py`` writes the file.
Result files (alphas.json, genotype.json) are written atomically and only once a stage succeeds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from nas.core.arch import load_alphas
from nas.core.genotype import (
    Genotype,
    count_op,
    load_genotype,
    param_free_ops,
    resolve_genotype,
    save_genotype,
)
from nas.core.lm_metrics import NAMES as LM_METRICS
from nas.core.log import get_logger
from nas.data.datasets import is_token_dataset
from nas.hardware.profile import count_macs, count_params
from nas.retrain import export
from nas.run import builders, pt_stage, wandb_run
from nas.run.console import banner, quiet_lightning
from nas.run.devices import runs_on_cpu
from nas.run.experiment_check import check_experiment_choices
from nas.run.input_check import check_inputs
from nas.run.progressive_depth import fit_stages
from nas.run.settings import child_size, constraint_settings, data_settings, export_settings
from nas.run.summary import write_summary
from nas.run.threads import choose as choose_threads
from nas.search.benchmark_curve import summary_fields as curve_summary
from nas.search.hessian import summary_fields as hessian_summary
from nas.search.report import HISTORY_FILE, alpha_entropy, weight_kind
from nas.strategies.regularizers.hardware_cost import HardwareCost
from nas.strategies.selection import select
from supernet.spaces.base import SearchSpace

log = get_logger(__name__)

ALPHAS_FILE = "alphas.json"
GENOTYPE_FILE = "genotype.json"


def profile_fields(cfg: DictConfig, space: SearchSpace, genotype: Genotype) -> dict[str, Any]:
    """``count_fields`` of a child network built for the count (its draws from the torch RNG
    are those of ``retrain``'s eager copy: ``nas.run.chance`` trains random cells alike)."""
    return count_fields(cfg, builders.child_network(cfg, space, genotype))


def count_fields(cfg: DictConfig, model: torch.nn.Module) -> dict[str, Any]:
    """Params (without the auxiliary head) and multiply-adds of the child network ``model``."""
    C, layers = child_size(cfg)
    return {
        "params": count_params(model),
        "macs": count_macs(model, list(cfg.data.input_shape), dtype=input_dtype(cfg)),
        "retrain_C": C,
        "retrain_layers": layers,
    }


def input_dtype(cfg: DictConfig) -> torch.dtype:
    """The dtype of the networks' input: int64 token ids for token data, else float32."""
    return torch.long if is_token_dataset(cfg.data.name) else torch.float32


def hardware_fields(
    cfg: DictConfig, space: SearchSpace, genotype, probs: dict, strategy=None
) -> tuple[Any, dict[str, Any]]:
    """The constraint's genotype (``nas/hardware/constraint.py``) and its params / MACs / latency
    (``latency_ms`` and ``latency_ms_table``: the lookup table's estimate).

    Only when a constraint, a latency table or a hardware-cost regularizer is configured (the
    cost tables of a large child take a few seconds). Latency comes from
    ``costs.latency_table``, else from a HardwareCost regularizer's own (measured) table when
    it covers the child (where the searched network is the child), else it is left out.
    """
    from nas.hardware.constraint import enforce, targets_of

    targets = targets_of(constraint_settings(cfg))
    table = cfg.get("costs", {}).get("latency_table")
    regs = [r for r in strategy.regularizers if isinstance(r, HardwareCost)] if strategy else []
    if not (targets or table or regs):
        return genotype, {}
    cm = builders.config_cost_model(cfg, space)
    if table:
        from nas.hardware.latency import attach

        attach(cm, table)
    else:
        needed = [s.key for s in cm.op_shapes()] + [cm.fixed_key]
        for r in regs:
            entries = (r.cost_model.latency if r.cost_model is not None else None) or {}
            if all(k in entries for k in needed):
                cm.set_latency(entries)
                break
    fields: dict[str, Any] = {}
    if targets:
        genotype, fields["constraint"] = enforce(space, genotype, probs, cm, targets)
        log.info(f"constraint {fields['constraint']['targets']} met: {genotype}")
    fields["params"] = int(cm.genotype_cost(space, genotype, "params"))
    fields["macs"] = int(cm.genotype_cost(space, genotype, "macs"))
    if cm.latency is not None:
        # The lookup table's estimate (what a latency penalty optimises, free of timing noise)
        # stays as latency_ms_table; latency_ms is it until a retrain measures the exported
        # network (nas/retrain/export.py), which then replaces latency_ms and latency.
        source = table or "HardwareCost's table (measured at search start)"
        estimate = cm.genotype_cost(space, genotype, "latency")
        fields["latency_ms"] = fields["latency_ms_table"] = estimate
        fields["latency"] = {"model": "latency table", "source": source}
    return genotype, fields


def latency(cfg: DictConfig, run_dir: Path, space: SearchSpace) -> dict[str, Any]:
    """``stage=latency``: times every candidate op at its shapes (retrained child and searched
    network) and the fixed parts on this run's device; writes ``latency_table.json``."""
    from nas.hardware.costs import space_cost_model
    from nas.hardware.latency import LATENCY_FILE, measure, save_table

    device = profile_device(cfg)
    s = export.latency_settings(export_settings(cfg))
    models = [builders.config_cost_model(cfg, space), space_cost_model(space)]
    log.info(f"latency: timing {space.name} candidate ops on {device} (batch {s['batch']}, "
             f"{s['warmup']} warm-up, median of {s['repeats']}, {torch.get_num_threads()} threads)")  # fmt: skip
    start = time.perf_counter()
    entries = measure(models, device, s["batch"], s["repeats"], s["warmup"])
    path = save_table(
        run_dir / LATENCY_FILE, entries, [space.name], device, s["batch"], s["repeats"],
        s["warmup"],
    )  # fmt: skip
    log.info(f"latency table of {len(entries)} entries: {path}")
    return {
        "latency_table": str(path),
        "latency_entries": len(entries),
        "latency_fixed_ms": entries[models[0].fixed_key],
        "latency_wall_time_s": time.perf_counter() - start,
        "device": str(device),
        "latency_batch": s["batch"],
        "threads": torch.get_num_threads(),
    }


def selection_batches(module, data) -> list:
    """The first ``selector.eval_batches`` validation batches, normalised, on the module's
    device: every candidate of a model-based selector is scored on the same images."""
    selector = module.strategy.selector
    n = selector.eval_batches if selector is not None else 1
    return data.first_batches(data.val_dataloader(), n, module.device)


def token_fields(
    metrics: dict, prefix: str, to: str, data, windows_key: str = "retrain_windows"
) -> dict[str, Any]:
    """Language modelling (``data=text``): the pass's ``loss``, ``bits_per_byte`` and
    ``perplexity`` (``metrics[prefix + name]`` as ``to + name``), the corpus read (``corpus``)
    and the stage's windows per split (``windows_key``). Nothing for image data."""
    info = data.token_info()
    if info is None:
        return {}
    out = {f"{to}{name}": _number(metrics.get(f"{prefix}{name}")) for name in LM_METRICS}
    if None not in out.values():
        loss, bpb, ppl = out.values()
        log.info(f"{to.rstrip('_')}: loss {loss:.4f} nats/token, {bpb:.4f} bits/byte, "
                 f"perplexity {ppl:.3f}")  # fmt: skip
    splits = info.pop("splits")
    return {**out, "corpus": info, windows_key: splits}


def _number(value) -> float | None:
    return None if value is None else float(value)


def estimate_fields(cfg: DictConfig, space: SearchSpace, genotype) -> dict[str, Any]:
    """Each of ``estimators`` that applies to the space scores the genotype
    (``nas/estimate``); its fields go under its name (``benchmark``: NAS-Bench-201 for nb201)."""
    from nas.estimate import build_estimator

    out: dict[str, Any] = {}
    for name in cfg.estimators:
        estimator = build_estimator(name)
        if not estimator.applies_to(space):
            continue
        out[name] = result = estimator.estimate(space, genotype)
        if not result.get("available", True):
            log.info(f"estimator {name} unavailable: {result['reason']}")
    return out


def is_wandb(logger) -> bool:
    from lightning.pytorch.loggers import WandbLogger

    return isinstance(logger, WandbLogger)


def search(cfg: DictConfig, run_dir: Path, logger, space: SearchSpace) -> dict[str, Any]:
    report = builders.search_report(cfg, run_dir)
    start = time.perf_counter()
    fit_cfg = cfg  # resume=<a DARTS-PT checkpoint>: the search resumes as resume=auto
    if cfg.selection.name == "pt":
        fit_cfg = pt_stage.search_stage_config(cfg)
    if cfg.strategy.stages:  # P-DARTS: one fit per depth stage (nas/run/progressive_depth.py)
        module, trainer, data = fit_stages(fit_cfg, run_dir, logger, [*report.extras, report])
    else:
        module = builders.search_module(cfg, space)
        data = builders.search_data(cfg)
        callbacks = [*report.extras, report]
        trainer = builders.trainer(cfg, run_dir, "search", logger, callbacks=callbacks)
        ckpt = builders.resume_checkpoint(fit_cfg, run_dir, "search")
        trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    if trainer.interrupted:
        raise KeyboardInterrupt("search interrupted; no alphas written")
    selection = None
    if cfg.selection.name == "pt":  # DARTS-PT after any strategy (nas/search/pt_selection.py)
        selection = pt_stage.select(cfg, module, data, run_dir)  # checkpointed; resumes
        log.info(f"DARTS-PT selection: {selection['genotype']}")
    elif module.strategy.selector is not None:
        selection = module.select_architecture(selection_batches(module, data))
        log.info(f"post-search selection: {selection}")
    genotype, cost_fields = hardware_fields(
        cfg, space, module.genotype(), module.probabilities(), module.strategy
    )
    if trainer.is_global_zero:
        module.arch.save(run_dir / ALPHAS_FILE)
        save_genotype(genotype, run_dir / GENOTYPE_FILE)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    log.info(f"search done: {genotype}")
    extra = {} if selection is None else {"selection": selection}
    extra.update(cost_fields)
    extra.update(hessian_summary(report.extras))
    extra.update(curve_summary(report.extras, run_dir))
    extra.update(estimate_fields(cfg, space, genotype))
    fields = {
        **extra,
        "genotype": str(genotype),
        "search_wall_time_s": time.perf_counter() - start,
        "search_epochs": trainer.current_epoch,
        "skipped_steps": module.skipped_steps,
        "search_val_acc": metrics.get("search/val_acc"),
        **token_fields(metrics, "search/val_", "search_val_", data, "search_windows"),
        "supernet_params": sum(p.numel() for p in module.supernet.parameters()),
        "skip_connect": count_op(genotype, "skip_connect"),
        "param_free_ops": param_free_ops(genotype),
        "alpha_entropy": alpha_entropy(module.probabilities(), weight_kind(module)[0]),
        "alphas_file": str(run_dir / ALPHAS_FILE),
        "genotype_file": str(run_dir / GENOTYPE_FILE),
        "history_file": str(run_dir / HISTORY_FILE),
        "figures": report.finalize(trainer, module),
    }
    if is_wandb(logger) and trainer.is_global_zero:
        files = {
            "alphas": ("alphas", run_dir / ALPHAS_FILE),
            "genotype": ("genotype", run_dir / GENOTYPE_FILE),
            "supernet": ("model", run_dir / "checkpoints" / "search" / "last.ckpt"),
        }
        artifacts = wandb_run.log_artifacts(logger, cfg, files)
        wandb_run.update_summary(logger, fields)
        fields["wandb"] = {"search": {**wandb_run.run_fields(logger), "artifacts": artifacts}}
    return fields


def discretize(
    cfg: DictConfig, run_dir: Path, alphas_path: str | Path, space: SearchSpace
) -> dict[str, Any]:
    """Derives the genotype of a saved alphas file with the strategy's (or space's) rule."""
    strategy = builders.strategy_from_config(cfg)
    alphas = load_alphas(alphas_path, space)
    strategy.setup(space=space, seed=cfg.seed)
    probs = strategy.probabilities(alphas)
    genotype = select(strategy.selection or space.default_selection, probs, space)
    genotype, cost_fields = hardware_fields(cfg, space, genotype, probs, strategy)
    save_genotype(genotype, run_dir / GENOTYPE_FILE)
    log.info(f"genotype of {alphas_path}: {genotype}")
    return {
        **cost_fields,
        **estimate_fields(cfg, space, genotype),
        "genotype": str(genotype),
        "alphas_file": str(alphas_path),
        "genotype_file": str(run_dir / GENOTYPE_FILE),
    }


def load_genotype_arg(cfg: DictConfig, space: SearchSpace) -> Genotype:
    if not cfg.genotype:
        raise ValueError(
            f"stage={cfg.stage.value} needs a genotype: genotype=<zoo name or path to genotype.json>, "
            "e.g. genotype=darts_v2."
        )
    genotype = resolve_genotype(cfg.genotype)
    space.validate_genotype(genotype, check_ops=False)
    return genotype


def retrain(
    cfg: DictConfig,
    run_dir: Path,
    logger,
    space: SearchSpace,
    genotype: Genotype,
    search_run: dict | None = None,
) -> dict[str, Any]:
    export.check_config(export_settings(cfg))  # a bad export setting fails now, not after training
    inherit = bool(cfg.retrain.get("inherit"))
    build = builders.inherited_child if inherit else builders.child_network
    extra = (run_dir,) if inherit else ()
    model = build(cfg, space, genotype, *extra)
    # A second, eager copy, built here as it always was: its draws from the torch RNG come
    # before the training's (building it later or not at all would change the run's numbers).
    # Counted now; after training it takes the trained weights for the export.
    eager = build(cfg, space, genotype, *extra)
    fields = count_fields(cfg, eager)
    module = builders.retrain_module(cfg, model)
    data = builders.retrain_data(cfg)
    trainer = builders.trainer(cfg, run_dir, "retrain", logger, max_epochs=cfg.retrain.epochs)
    source = "the supernet's weights" if inherit else "scratch"
    log.info(
        f"retrain: {fields['params']:,} params, {fields['macs']:,} MACs, {cfg.retrain.epochs} "
        f"epochs from {source}"
    )
    start = time.perf_counter()
    if cfg.retrain.epochs > 0:  # 0 (with inherit): evaluate the inherited weights only
        trainer.fit(
            module, datamodule=data, ckpt_path=builders.resume_checkpoint(cfg, run_dir, "retrain")
        )
    if trainer.interrupted:
        raise KeyboardInterrupt("retrain interrupted; no results written")
    results = trainer.test(module, datamodule=data, verbose=False)
    test_acc = results[0]["retrain/test_acc"] if results else None
    fields = {
        **fields,
        "genotype": str(genotype),
        "test_acc": test_acc,
        **token_fields(results[0] if results else {}, "retrain/test_", "test_", data),
        "retrain_epochs": cfg.retrain.epochs,
        "retrain_inherited": inherit,
        "retrain_skipped_steps": module.skipped_steps,
        "retrain_wall_time_s": time.perf_counter() - start,
    }
    if trainer.is_global_zero:  # the checkpoint is saved: an export failure loses nothing
        fields.update(export_fields(cfg, space, genotype, module.model, eager, run_dir, trainer))
    if is_wandb(logger) and trainer.is_global_zero:
        ckpt = run_dir / "checkpoints" / "retrain" / "last.ckpt"
        exported = [Path(f) for f in export.exported_files(fields)]
        files = {"exported": ("model", exported)}
        if ckpt.is_file():  # none when the inherited weights were only evaluated (epochs=0)
            files["retrained"] = ("model", ckpt)
        artifacts = wandb_run.log_artifacts(logger, cfg, files)
        wandb_run.update_summary(logger, fields)
        retrain_run = {**wandb_run.run_fields(logger), "artifacts": artifacts}
        if search_run:
            retrain_run["search_run_id"] = search_run.get("run_id")
        fields["wandb"] = {"retrain": retrain_run}
    return fields


def export_fields(
    cfg: DictConfig,
    space: SearchSpace,
    genotype: Genotype,
    trained: torch.nn.Module,
    eager: torch.nn.Module,
    run_dir: Path,
    trainer,
) -> dict[str, Any]:
    """``nas/retrain/export.py`` on ``eager``, an untrained eager copy of the child (the trained
    one may be compiled or NHWC) given the trained weights, timed on the device it was trained
    on."""
    eager.load_state_dict(trained.state_dict())
    device = trainer.strategy.root_device
    return export.export_child(
        eager, export_settings(cfg), data_settings(cfg), run_dir, genotype, space.name, device
    )


def profile_device(cfg: DictConfig) -> torch.device:
    """Where ``stage=profile`` times the network: the device a run of this config trains on."""
    if runs_on_cpu(cfg) or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def profile(
    cfg: DictConfig, run_dir: Path, space: SearchSpace, genotype: Genotype
) -> dict[str, Any]:
    settings = export_settings(cfg)
    export.check_config(settings)
    model = builders.child_network(cfg, space, genotype)
    fields = count_fields(cfg, model)
    if settings.latency_repeats:
        device = profile_device(cfg)
        latency = export.eager_latency(model, data_settings(cfg), settings, device)
        fields.update({"latency_ms": latency["latency_ms"], "latency": latency})
    timing = (
        f", {fields['latency_ms']:.3g} ms per batch of {cfg.export.latency_batch} on "
        f"{fields['latency']['device']} ({torch.get_num_threads()} threads)"
        if "latency_ms" in fields
        else ""
    )
    log.info(
        f"profile: {fields['params']:,} params, {fields['macs']:,} MACs at "
        f"{list(cfg.data.input_shape)}{timing}"
    )
    return {
        **fields,
        **estimate_fields(cfg, space, genotype),
        "genotype": str(genotype),
        "input_shape": list(cfg.data.input_shape),
    }


def estimate(cfg: DictConfig, run_dir: Path, space: SearchSpace) -> dict[str, Any]:
    """``stage=estimate``: proxies score many architectures (``nas/run/estimate_stage.py``);
    with ``logger=wandb`` the table and the figures go to the run's W&B run."""
    from nas.run import estimate_stage

    logger = builders.logger_from_config(cfg, run_dir, "estimate")
    try:
        fields = estimate_stage.estimate(cfg, run_dir, space, profile_device(cfg))
        if is_wandb(logger):
            wandb_run.log_estimates(logger, Path(fields["estimates_file"]), fields)
            fields["wandb"] = {"estimate": wandb_run.run_fields(logger)}
    finally:
        finish(logger)
    return fields


def _is_global_zero() -> bool:
    """Rank 0 of a launched DDP job (the banner is printed once)."""
    import os

    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0"


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Runs ``cfg.stage`` and returns its summary fields."""
    stage = cfg.stage.value
    start = time.perf_counter()
    check_experiment_choices()
    space = check_inputs(cfg)  # before any data is read or a logger (a W&B run) is created
    choose_threads(cfg.threads)  # auto: as many as CPUs are idle now (nas/run/threads.py)
    quiet_lightning()
    if _is_global_zero():
        print(banner(cfg, run_dir), flush=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if stage == "discretize":
        if not cfg.alphas:
            raise ValueError("stage=discretize needs alphas=<path to alphas.json>.")
        return discretize(cfg, run_dir, cfg.alphas, space)
    if stage == "latency":
        return latency(cfg, run_dir, space)
    if stage == "estimate":
        return estimate(cfg, run_dir, space)
    if stage == "profile":
        return profile(cfg, run_dir, space, load_genotype_arg(cfg, space))
    if stage == "retrain":
        genotype = load_genotype_arg(cfg, space)
        search_run = wandb_run.search_run_of(cfg.genotype)
        logger = retrain_logger(cfg, run_dir, search_run)
        try:
            fields = retrain(cfg, run_dir, logger, space, genotype, search_run)
        finally:
            finish(logger)
        return check_exports(cfg, run_dir, fields, start)

    logger = builders.logger_from_config(cfg, run_dir, "search")
    try:
        fields = search(cfg, run_dir, logger, space)
    finally:
        finish(logger)
    if stage == "pipeline":
        genotype = load_genotype(run_dir / GENOTYPE_FILE)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        search_run = fields.get("wandb", {}).get("search")
        logger = retrain_logger(cfg, run_dir, search_run)  # a stage's own W&B run / CSV file
        try:
            retrain_fields = retrain(cfg, run_dir, logger, space, genotype, search_run)
        finally:
            finish(logger)
        wandb = {**fields.get("wandb", {}), **retrain_fields.pop("wandb", {})}
        fields = {**fields, **retrain_fields, **({"wandb": wandb} if wandb else {})}
        from nas.run.chance import compare  # random cells trained alike (chance.cells; 0 = off)

        fields.update(compare(cfg, run_dir, space, genotype, fields.get("test_acc")))
        return check_exports(cfg, run_dir, fields, start)
    return fields


def check_exports(cfg: DictConfig, run_dir: Path, fields: dict[str, Any], start: float) -> dict:
    """The fields, or, when a format asked for with ``export.<format>=true`` failed, an error
    (exit status 2) after writing ``summary.json`` with everything else and the failure."""
    failed = export.failed_required(fields)
    if not failed:
        return fields
    path = write_summary(run_dir, cfg, fields, time.perf_counter() - start)
    raise ValueError(
        f"export failed ({'; '.join(failed)}). The trained model is kept in "
        f"{run_dir / 'checkpoints' / 'retrain'} and the results in {path}; set "
        "export.<format>=auto to report an export failure without failing the run."
    )


def retrain_logger(cfg: DictConfig, run_dir: Path, search_run: dict | None):
    """The retrain stage's logger: for W&B a run in the search run's group, linked to it."""
    group = (search_run or {}).get("group")
    logger = builders.logger_from_config(cfg, run_dir, "retrain", group, search_run)
    if is_wandb(logger):
        wandb_run.use_search_genotype(logger, search_run)
    return logger


def finish(logger) -> None:
    """Ends a stage's W&B run (the next stage or multirun job starts its own)."""
    if is_wandb(logger):
        wandb_run.finish(logger)
