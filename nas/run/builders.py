"""Config → objects: spaces, strategies, modules, loggers, trainers. No algorithm logic here."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate as hydra_instantiate
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from omegaconf import DictConfig, OmegaConf

from nas.core.checkpoints import LAST, AtomicCheckpointIO
from nas.core.genotype import Genotype
from nas.core.log import get_logger
from nas.core.lr_schedules import WarmupThenCosine
from nas.core.rng import RNGState
from nas.data.datasets import token_bytes
from nas.data.modules import RetrainDataModule, SearchDataModule
from nas.hardware.costs import CostModel, build_cost_model
from nas.retrain.module import RetrainModule
from nas.run.checkpointing import RunCheckpoint, describe
from nas.run.console import progress_bar
from nas.run.devices import channels_last, runs_on_cpu
from nas.run.guards import NonFiniteGuard
from nas.run.resume import ConfigStamp, check_checkpoint, resolve_checkpoint, run_identity
from nas.run.resume_logs import ContinueLogs
from nas.run.settings import child_size, data_settings, diagnostics_settings
from nas.search.module import SearchModule
from nas.search.report import SearchReport
from nas.strategies import Strategy
from nas.strategies.arch_grad import SecondOrder
from nas.strategies.samplers import SAMPLERS, Sampler, build_sampler
from supernet.kernels import check_triton_runs
from supernet.mixed import compile_candidates
from supernet.spaces import SPACES, build_space, space_defaults
from supernet.spaces.base import SearchSpace

log = get_logger(__name__)


def instantiate(node: DictConfig):
    """The object a ``_target_`` node names, its nested arguments plain lists and dicts (Adam's
    betas, a pruning schedule): the rooms below ``nas.run`` never hold an OmegaConf container."""
    return hydra_instantiate(node, _convert_="all")


def space_from_config(cfg: DictConfig) -> SearchSpace:
    options = OmegaConf.to_container(cfg.search_space, resolve=True)
    name = options.pop("name")
    options = without_unset_foreign_keys(cfg.search_space, name, options)
    return build_space(name, list(cfg.data.input_shape), cfg.data.num_classes, **options)


def without_unset_foreign_keys(node: DictConfig, name: str, options: dict) -> dict:
    """``options`` less the keys space ``name`` does not take that are at the schema's default:
    the typed ``search_space`` node holds every space's keys, and one a space's YAML leaves out
    is not the user's choice. (Any other foreign key reaches ``build_space``, which refuses it
    by name.)"""
    schema = OmegaConf.get_type(node)
    if name not in SPACES or not dataclasses.is_dataclass(schema):
        return options
    defaults = {f.name: f.default for f in dataclasses.fields(schema)}
    taken = space_defaults(name)
    return {k: v for k, v in options.items() if k in taken or k not in defaults or v != defaults[k]}


def strategy_from_config(cfg: DictConfig) -> Strategy:
    s = cfg.strategy
    return Strategy(
        name=s.name,
        sampler=sampler_from_config(s.sampler),
        arch_grad=None if s.arch_grad is None else instantiate(s.arch_grad),
        selection=s.selection,
        regularizers=[instantiate(r) for r in s.regularizers],
        modifiers=[instantiate(m) for m in s.modifiers],
        selector=None if s.selector is None else instantiate(s.selector),
    )


def sampler_from_config(node: DictConfig) -> Sampler:
    """``strategy.sampler``: a ``_target_`` class path, or ``name`` of a sampler registered with
    ``nas.strategies.samplers.register_sampler`` plus its options."""
    if "_target_" in node and "name" in node:
        raise ValueError(
            f"strategy.sampler has both _target_={node._target_!r} and name={node.name!r}: "
            "give one. A strategy that names a registered sampler cannot inherit a _target_ "
            "sampler (Hydra merges the two nodes): state its components itself instead of "
            "defaults: [darts]."
        )
    if "_target_" in node:
        return instantiate(node)
    options = OmegaConf.to_container(node, resolve=True)
    if "name" not in options:
        raise ValueError(
            f"strategy.sampler={options!r} names no sampler: give name (one of "
            f"{', '.join(sorted(SAMPLERS))}) or a _target_ class path."
        )
    return build_sampler(options.pop("name"), **options)


def search_module(cfg: DictConfig, space: SearchSpace) -> SearchModule:
    s = cfg.strategy
    check_triton_kernels(cfg)
    check_cuda_graph(cfg)
    strategy = strategy_from_config(cfg)
    check_cuda_graph_strategy(cfg, strategy)
    static_path = not strategy.sampler.samples_paths
    if s.lr_warmup_epochs:  # refused now, not when the fit starts after the data is read
        WarmupThenCosine(
            1.0, cfg.trainer.max_epochs or 1, s.lr_warmup_epochs, s.lr_warmup_peak, 0.0
        )
    module = SearchModule(
        space,
        strategy,
        weight_optimizer=instantiate(s.weight_optimizer),
        arch_optimizer=instantiate(s.arch_optimizer),
        weight_lr_min=s.weight_lr_min,
        grad_clip=s.grad_clip,
        alpha_init_std=s.alpha_init_std,
        arch_start_epoch=s.arch_start_epoch,
        arch_every=s.arch_every,
        label_smoothing=s.label_smoothing,
        lr_warmup_epochs=s.lr_warmup_epochs,
        lr_warmup_peak=s.lr_warmup_peak,
        seed=cfg.seed,
        skip_nonfinite=cfg.nonfinite == "skip",
        cuda_graph=cfg.cuda_graph and static_path,
        token_bytes=token_bytes(data_settings(cfg)),
    )
    if cfg.compile and not static_path:
        log.info(
            f"compile=true: the supernet of strategy={cfg.strategy.name} stays eager: "
            "its sampler runs different ops every forward pass, and a compiled graph would "
            "recompile for each choice. The retrained network is compiled."
        )
    if cfg.cuda_graph and not static_path:
        log.info(
            f"cuda_graph=true: strategy={cfg.strategy.name} samples a different "
            "path every forward pass, which a captured graph cannot follow; its supernet runs "
            "eager."
        )
    lean(cfg, module.supernet, compile_ok=static_path)
    if (
        cfg.compile
        and static_path
        and cfg.compile_scope == "edge"
        and getattr(space, "group_edges", False)
    ):
        log.info(
            "compile=true, compile_scope=edge: each edge's candidates run compiled, "
            "on their own; search_space.group_edges groups edges only on the eager path. "
            "Partial-channel edges (PC-DARTS) stay eager and grouped: they gain nothing from "
            "compiling."
        )
    return module


def search_data(cfg: DictConfig) -> SearchDataModule:
    data = SearchDataModule(data_settings(cfg), batch_size=cfg.strategy.batch_size, seed=cfg.seed)
    data.channels_last = channels_last(cfg)
    return data


COMPILE_SCOPES = ("edge", "model")
TRITON_KERNEL_KEYS = ("kernel", "batch_norm_kernel", "depthwise_kernel")


def check_triton_kernels(cfg: DictConfig) -> None:
    """A Triton kernel asked for (``search_space.<key>=triton``) on a run that will be on the
    CPU fails before any work rather than at the first step (Triton's interpreter,
    ``TRITON_INTERPRET=1``, excepted)."""
    if not runs_on_cpu(cfg):
        return
    for key in TRITON_KERNEL_KEYS:
        if cfg.search_space.get(key) == "triton":
            check_triton_runs(torch.device("cpu"), f"search_space.{key}")


def check_cuda_graph(cfg: DictConfig) -> None:
    """``cuda_graph=true`` captures whole supernet passes itself: CUDA graphs made by
    ``compile_mode=reduce-overhead`` inside them cannot be captured again."""
    if cfg.cuda_graph and cfg.compile and "reduce-overhead" in cfg.compile_mode:
        raise ValueError(
            f"cuda_graph=true cannot be combined with compile=true and "
            f"compile_mode={cfg.compile_mode!r}: that mode makes its own CUDA graphs, which "
            "cannot be captured inside the supernet's graph. Use compile_mode=default (or "
            "max-autotune-no-cudagraphs) with cuda_graph=true, or cuda_graph=false."
        )


def check_cuda_graph_strategy(cfg: DictConfig, strategy: Strategy) -> None:
    """Second-order DARTS runs its virtual step eagerly (a backward over the weights on the
    default stream) right before the graphed weight step. On an H100 (torch 2.11, bf16
    autocast, cudnn.benchmark, Triton sum; fp32 not tried) the weight step's backward capture
    then failed with cudaErrorStreamCaptureImplicit (the legacy stream would depend on the
    capturing one). The cause is not pinned down (no reference cycle keeps the eager graph
    alive, checked on CPU), so the combination is refused before the run starts."""
    if cfg.cuda_graph and isinstance(strategy.arch_grad, SecondOrder):
        raise ValueError(
            f"cuda_graph=true does not support strategy={cfg.strategy.name}: its second-order "
            "arch step runs eager weight gradients right before the captured weight step, and "
            "the capture fails on the GPU. Use cuda_graph=false with second-order strategies, "
            "or cuda_graph=true with a first-order one (darts, pcdarts, drnas)."
        )


def lean(cfg: DictConfig, net: torch.nn.Module, compile_ok: bool = True) -> torch.nn.Module:
    """Applies the speed options in place: channels_last memory format, torch.compile."""
    if channels_last(cfg):
        net.to(memory_format=torch.channels_last)
    if cfg.compile and compile_ok:
        scope = cfg.compile_scope
        if scope not in COMPILE_SCOPES:
            raise ValueError(
                f"Unknown compile_scope={scope!r}. Valid choices are: {', '.join(COMPILE_SCOPES)} "
                "(edge: each mixed op's candidates, one graph per edge width and stride, shared "
                "by all such edges; model: the whole network as one graph)."
            )
        if scope == "edge" and compile_candidates(net, mode=cfg.compile_mode):
            return net
        # In place (nn.Module.compile): parameter names, checkpoints and DDP stay unchanged.
        net.compile(dynamic=False, mode=cfg.compile_mode)
    return net


def retrain_data(cfg: DictConfig) -> RetrainDataModule:
    r = cfg.retrain
    data = RetrainDataModule(
        data_settings(cfg), batch_size=r.batch_size, seed=cfg.seed, cutout=r.cutout
    )
    data.channels_last = channels_last(cfg)
    return data


def check_child_network(cfg: DictConfig, space: SearchSpace) -> None:
    """Refuses a child network that does not fit the data, naming both choices
    (``SearchSpace.child_networks``, ``SearchSpace.child_input_error``)."""
    network = cfg.retrain.get("network", "cifar")
    if network not in space.child_networks:
        raise ValueError(
            f"Unknown retrain.network={network!r} for search_space={space.name}; valid: "
            f"{', '.join(space.child_networks)}."
        )
    shape = list(cfg.data.input_shape)
    side = max(shape[1:]) if len(shape) > 1 else shape[0]  # an image's side, or a context
    problem = space.child_input_error(network, side, cfg.data.name, cfg.retrain.name)
    if problem is not None:
        raise ValueError(problem)


def child_network(cfg: DictConfig, space: SearchSpace, genotype: Genotype):
    """The space's child network of ``retrain.network`` (``cifar``; the DARTS space also
    ``imagenet``: DARTS' NetworkImageNet) at the retrain recipe's sizes."""
    r = cfg.retrain
    C, layers = child_size(cfg)
    check_child_network(cfg, space)
    return space.build_child(
        genotype, network=r.get("network", "cifar"), C=C, layers=layers, auxiliary=r.auxiliary
    )


def inherited_child(cfg: DictConfig, space: SearchSpace, genotype: Genotype, run_dir: Path):
    """The child network with the searched supernet's weights (``retrain.inherit=true``):
    the supernet of ``retrain.supernet_checkpoint`` (default: this run's search checkpoint)."""
    path = Path(cfg.retrain.supernet_checkpoint or run_dir / "checkpoints" / "search" / LAST)
    if not path.is_file():
        raise FileNotFoundError(
            f"retrain.inherit=true needs the search's supernet weights, but {path} does not "
            "exist: run the search in this run directory first, or give "
            "retrain.supernet_checkpoint=<a search run's checkpoints/search/last.ckpt>."
        )
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    supernet = space.build_supernet()
    prefix = "supernet."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = supernet.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"retrain.supernet_checkpoint={path}: its supernet does not match this search space "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}); give the checkpoint of a "
            "search with the same search_space settings."
        )
    check_child_network(cfg, space)
    return space.child_from_supernet(supernet, genotype)


def config_cost_model(cfg: DictConfig, space: SearchSpace) -> CostModel:
    """Cost tables of the child the run retrains (``retrain`` C / layers / network)."""
    return build_cost_model(
        space, lambda g: child_network(cfg, space, g), list(cfg.data.input_shape)
    )


def retrain_module(cfg: DictConfig, model) -> RetrainModule:
    r = cfg.retrain
    return RetrainModule(
        lean(cfg, model),
        optimizer=instantiate(r.optimizer),
        scheduler=r.scheduler,
        lr_min=r.lr_min,
        gamma=r.gamma,
        auxiliary_weight=r.auxiliary_weight if r.auxiliary else 0.0,
        drop_path=r.drop_path,
        grad_clip=r.grad_clip,
        label_smoothing=r.label_smoothing,
        dropout=r.dropout,
        no_decay_bn=r.no_decay_bn,
        skip_nonfinite=cfg.nonfinite == "skip",
        token_bytes=token_bytes(data_settings(cfg)),
    )


def logger_from_config(
    cfg: DictConfig,
    run_dir: Path,
    job_type: str = "search",
    group: str | None = None,
    search_run: dict | None = None,
):
    """``wandb`` (offline unless logger.mode=online: no key or network needed; one W&B run per
    stage, ``nas.run.wandb_run``), ``csv`` or ``none``."""
    lg = cfg.logger
    if lg.name == "none":
        return False
    if lg.name == "csv":
        from nas.run.resume_logs import ResumableCSVLogger

        # One file per stage (csv/search/metrics.csv, csv/retrain/metrics.csv): each resumes
        # on its own, and a stage's epochs and steps start at 0.
        return ResumableCSVLogger(save_dir=str(run_dir), name="csv", version=job_type)
    if lg.name == "wandb":
        from nas.run.wandb_run import make_logger

        return make_logger(cfg, run_dir, job_type, group=group, search_run=search_run)
    raise ValueError(f"Unknown logger {lg.name!r}. Valid choices are: wandb, csv, none.")


RESUMABLE_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"


def trainer(
    cfg: DictConfig, run_dir: Path, stage: str, logger, max_epochs: int | None = None, callbacks=()
) -> L.Trainer:
    """A Trainer from ``cfg.trainer`` with checkpoints under ``<run_dir>/checkpoints/<stage>``."""
    options = {
        k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if v is not None
    }
    if max_epochs is not None:
        options["max_epochs"] = max_epochs
    ckpt_dir = run_dir / "checkpoints" / stage
    # One last.ckpt per stage, written at every epoch end (and every_n_steps / every_minutes),
    # atomically; a mid-epoch stop's (SIGTERM, max_steps) is kept as it is, so resuming
    # continues inside that epoch (nas/run/checkpointing.py).
    every = cfg.checkpoint
    checkpoint = RunCheckpoint(ckpt_dir, every.every_n_steps, every.every_minutes)
    guards = [
        NonFiniteGuard(),  # before ModelCheckpoint: a diverged state is never saved
        ConfigStamp(run_identity(cfg, stage)),
        RNGState(),
        ContinueLogs(),
    ]
    # The bar reads the logged values (a host sync on a GPU) when it redraws: every
    # log_every_n_steps steps, as the loggers do, not every step.
    # Listed after the stage's callbacks, so an epoch's line shows what they logged for it.
    bar = []
    if options.get("enable_progress_bar", True):
        bar = [progress_bar(stage, refresh_rate=options.get("log_every_n_steps", 50))]
    # Lightning warns that a mid-epoch checkpoint cannot resume a DataLoader without state_dict;
    # ours resume through their datamodule's own state (ResumableBatchSampler: the pass's
    # generator state and the batches already delivered), tested bitwise in test_resume.py.
    warnings.filterwarnings("ignore", message=RESUMABLE_WARNING, category=PossibleUserWarning)
    return L.Trainer(
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=[*guards, checkpoint, *callbacks, *bar],
        # The datamodules' seeded samplers shard batches across ranks themselves.
        use_distributed_sampler=False,
        plugins=[AtomicCheckpointIO()],
        **options,
    )


def resume_checkpoint(cfg: DictConfig, run_dir: Path, stage: str) -> str | None:
    """The checkpoint ``cfg.resume`` asks for (checked against this config), or None; says
    which, so a ``resume=auto`` that finds nothing never starts over silently."""
    path = resolve_checkpoint(cfg.get("resume"), run_dir, stage)
    if path is None:
        if cfg.get("resume") == "auto":
            where = run_dir / "checkpoints" / stage / LAST
            log.info(f"{stage}: resume=auto found no checkpoint ({where}); "
                     "starting from the beginning")  # fmt: skip
        return None
    check_checkpoint(path, cfg, stage)
    log.info(f"{stage}: resuming from {path} ({describe(path)})")
    return str(path)


def benchmark_curve(cfg: DictConfig, run_dir: Path):
    """The anytime benchmark curve (``nas/search/benchmark_curve.py``) where ``estimators``
    names ``benchmark`` and the space has a benchmark file (NAS-Bench-201)."""
    from nas.estimate.benchmark import BenchmarkLookup
    from nas.search.benchmark_curve import BenchmarkCurve

    space = space_from_config(cfg)
    lookup = BenchmarkLookup()
    if "benchmark" not in cfg.estimators or not lookup.applies_to(space):
        return None
    if not lookup.estimate(space, space.reference_genotype()).get("available"):
        return None  # no file (the summary's benchmark field says why): no curve to draw
    return BenchmarkCurve(run_dir, lookup)


def search_report(cfg: DictConfig, run_dir: Path) -> SearchReport:
    """The per-epoch report; its ``extras`` (the Hessian diagnostic, when
    ``diagnostics.hessian_every`` > 0; the benchmark curve, NAS-Bench-201 with its file) are
    callbacks listed before it."""
    from nas.search.hessian import hessian_callback

    diagnostic = hessian_callback(diagnostics_settings(cfg), cfg.seed, compiled=cfg.compile)
    extras = [c for c in (diagnostic, benchmark_curve(cfg, run_dir)) if c is not None]
    return SearchReport(
        run_dir,
        images=cfg.logger.alpha_images,
        extras=extras,
        final_images=cfg.logger.final_figures,
    )
