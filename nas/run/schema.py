"""Typed schemas of the Hydra config, registered in the ConfigStore.

The root config (``conf/config.yaml``) starts from ``base_config``, so every group is merged
into a typed node: a misspelt key or a wrongly typed value fails at compose time with a
message naming the key. Instantiable sub-objects (``_target_`` nodes) are typed ``Any``.
OmegaConf cannot parse ``X | None``, hence ``Optional``.

This is the one home of every default: ``conf/config.yaml`` states only what differs. The
settings a room below ``nas.run`` takes are that room's dataclasses (``data``, ``export``,
``diagnostics``, ``selection``, ``constraint``), composed here; ``nas.run.settings`` hands them down typed.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional  # noqa: UP035

from hydra.core.config_store import ConfigStore
from hydra.utils import get_object
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from nas.data.config import DataConfig
from nas.hardware.constraint import ConstraintConfig
from nas.retrain.export import ExportConfig
from nas.search.hessian import DiagnosticsConfig
from nas.search.pt_selection import SelectionConfig
from nas.search.settings import SearchSettings


class Stage(str, Enum):
    pipeline = "pipeline"
    search = "search"
    discretize = "discretize"
    retrain = "retrain"
    profile = "profile"
    latency = "latency"
    estimate = "estimate"


class NonFinite(str, Enum):
    stop = "stop"
    skip = "skip"


@dataclass
class SearchSpaceConfig:
    """The search space: op list and supernet sizes (paper defaults of the DARTS CIFAR space).

    For ``nb201``, ``layers`` is N (cells per stage) and ``steps`` the nodes after the input.
    """

    name: str = MISSING
    ops: list[str] = MISSING
    C: Optional[int] = 16  # noqa: UP045 - module: null unless the model takes C
    layers: Optional[int] = 8  # noqa: UP045 - module: null unless the model takes layers
    steps: int = 4
    multiplier: int = 4
    stem_multiplier: int = 3
    kernel: str = "auto"
    track_running_stats: bool = True  # BN running statistics in the search cells (nb201: false)
    reduce_cell: str = "searched"  # darts: "searched" or a fixed cell ("gdas_frc", GDAS' FRC)
    pool_bn: bool = True  # darts: BN after the pools of the search cells (DrNAS' code: none)
    group_edges: bool = True  # edges with inputs ready together run as one op per candidate
    batch_norm_kernel: str = "torch"  # grouped edge ops' batch norm: torch | triton (GPU)
    depthwise_kernel: str = "torch"  # grouped edge ops' depthwise convs: torch | triton (GPU)
    pointwise_kernel: str = "auto"  # grouped edge ops' 1x1 convs: auto | conv | matmul
    benchmark_file: Optional[str] = None  # noqa: UP045 - NAS-Bench-201/NATS-Bench file (nb201)
    layout: str = "cifar"  # mbconv: cifar | imagenet_mobile (ProxylessNAS' mobile stages)
    width_mult: float = 1.0  # mbconv: every width times width_mult (ProxylessNAS' rounding)
    se: bool = False  # mbconv: squeeze-excitation in every MBConv block
    superkernel: bool = True  # mbconv: shared-weight superkernel (false: separate candidates)
    model: Any = None  # module: the model class to search (import path, or {_target_: ..., args})
    # vit (supernet/spaces/vit.py): AutoFormer-T's choice sets by default.
    embed_dims: list[int] = field(default_factory=lambda: [192, 216, 240])
    depths: list[int] = field(default_factory=lambda: [12, 13, 14])
    num_heads: list[int] = field(default_factory=lambda: [3, 4])
    mlp_ratios: list[float] = field(default_factory=lambda: [3.5, 4.0])
    head_dim: int = 64  # Q-K-V width per head
    patch_size: Optional[int] = None  # noqa: UP045 - None: by the image side
    class_token: bool = True
    qkv_bias: bool = True
    # gpt (supernet/spaces/gpt.py): HW-GPT-Bench GPT-S's choices by default.
    n_embd: list[int] = field(default_factory=lambda: [192, 384, 768])
    n_layer: list[int] = field(default_factory=lambda: [10, 11, 12])
    n_head: list[int] = field(default_factory=lambda: [4, 8, 12])
    n_query_groups: Optional[list[int]] = None  # noqa: UP045 - None: one per head (MHA)
    intermediate_size: list[int] = field(default_factory=lambda: [1536, 2304, 3072])
    pos_encoding: list[str] = field(default_factory=lambda: ["learned"])
    head_size: int = 64
    bias: bool = True
    tied: bool = True  # the LM head is the token embedding


@dataclass
class DepthStage:
    """One stage of a progressive-depth search (P-DARTS; ``nas/run/progressive_depth.py``): a fresh
    supernet of ``layers`` cells (NAS-Bench-201: N cells per stage) trained for ``epochs``."""

    layers: int = MISSING
    epochs: Optional[int] = None  # noqa: UP045 - None = trainer.max_epochs (P-DARTS --epochs)
    keep: Optional[int] = None  # noqa: UP045 - ops per edge kept after this stage; None on the last
    drop_none: bool = False  # prune ``none`` first (P-DARTS get_min_k_no_zero)
    skip_dropout: float = 0.0  # initial dropout rate on skip_connect outputs (SkipDropout)
    add_width: int = 0  # channels added to search_space.C (P-DARTS --add_width)


@dataclass
class StrategyConfig:
    """A search method: its components and its paper's hyperparameters."""

    name: str = MISSING
    paper: str = ""
    sampler: Any = MISSING
    arch_grad: Any = MISSING
    selection: Optional[str] = None  # noqa: UP045 - None = the space's default rule
    regularizers: list[Any] = field(default_factory=list)
    modifiers: list[Any] = field(default_factory=list)
    selector: Any = None  # model-based post-search selection (RSWS, SPOS)
    batch_size: int = 64
    # The step's settings (the optimizers aside): their defaults and meaning are SearchSettings'
    # (nas/search/settings.py), written once.
    weight_optimizer: Any = MISSING
    weight_lr_min: float = SearchSettings.weight_lr_min
    arch_optimizer: Any = MISSING
    grad_clip: float = SearchSettings.grad_clip
    alpha_init_std: float = SearchSettings.alpha_init_std
    arch_start_epoch: int = SearchSettings.arch_start_epoch
    arch_every: int = SearchSettings.arch_every  # ProxylessNAS --grad_update_arch_param_every
    label_smoothing: float = SearchSettings.label_smoothing  # ProxylessNAS' search: 0.1
    lr_warmup_epochs: int = SearchSettings.lr_warmup_epochs  # ProxylessNAS' warm_up; 0 = off
    lr_warmup_peak: float = SearchSettings.lr_warmup_peak
    # Progressive depth (P-DARTS): search stages run as successive fits; empty = one fit.
    stages: list[DepthStage] = field(default_factory=list)


@dataclass
class RetrainConfig:
    """How a genotype's child network is trained from scratch."""

    name: str = MISSING
    network: str = "cifar"  # cifar (NetworkCIFAR) | imagenet (DARTS' NetworkImageNet, 224x224)
    # Child width and depth; None = the search space's (NAS-Bench-201: the benchmark's network).
    C: Optional[int] = 36  # noqa: UP045
    layers: Optional[int] = 20  # noqa: UP045
    auxiliary: bool = True
    auxiliary_weight: float = 0.4
    epochs: int = 600
    batch_size: int = 96
    optimizer: Any = MISSING
    scheduler: str = "cosine"
    lr_min: float = 0.0
    gamma: float = 0.97
    drop_path: float = 0.2
    cutout: int = 16
    grad_clip: float = 5.0
    label_smoothing: float = 0.0
    dropout: float = 0.0  # on the classifier's input, training only (ProxylessNAS mobile: 0.1)
    no_decay_bn: bool = False  # BatchNorm parameters without weight decay (ProxylessNAS)
    # Start from the searched supernet's weights instead of from scratch (spaces that extract a
    # child from the supernet: module); with epochs=0 the child is only evaluated (AutoFormer,
    # OFA: inherit and evaluate). The weights come from supernet_checkpoint (None: this run's
    # checkpoints/search/last.ckpt).
    inherit: bool = False
    supernet_checkpoint: Optional[str] = None  # noqa: UP045


@dataclass
class TrainerConfig:
    """Options passed to ``lightning.Trainer`` (``max_epochs`` is the search's epochs)."""

    accelerator: str = "auto"
    devices: Any = 1
    strategy: Any = "auto"
    num_nodes: int = 1
    precision: Any = "32-true"
    max_epochs: int = 50
    max_steps: int = -1
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 10
    enable_progress_bar: bool = True
    enable_model_summary: bool = False
    deterministic: Any = False
    num_sanity_val_steps: int = 0
    benchmark: Optional[bool] = None  # noqa: UP045


@dataclass
class LoggerConfig:
    """Where metrics go: ``wandb`` (offline unless ``mode=online``), ``csv`` or ``none``."""

    name: str = "wandb"
    project: str = "oneshot-nas"
    entity: Optional[str] = None  # noqa: UP045
    mode: str = "offline"
    tags: list[str] = field(default_factory=list)
    alpha_images: bool = True  # α heatmaps and cell diagrams of every search epoch
    final_figures: bool = True  # those of the final genotype (figures/, summary.json's figures)


@dataclass
class CostsConfig:
    """Hardware cost tables (``nas/hardware/costs.py``): per-candidate params / MACs / latency at
    the child's shapes. ``python train.py stage=latency`` times every candidate op at its shape
    on this device and writes ``latency_table.json``; pass it as ``latency_table`` for latency
    penalties (``strategy=fbnet``, HardwareCost) and constraints."""

    latency_table: Optional[str] = None  # noqa: UP045 - path to a latency_table.json


@dataclass
class CollectConfig:
    """What a multirun (``python train.py -m ...``) does when its last job ends
    (``nas/report/sweep_callback.py``): ``nas/report/collect.py`` on the sweep directory
    (results.md, CSVs, accuracy_vs_params.png, pareto_<cost>.png; a W&B run of job_type
    collect when the jobs logged to W&B). Run it again by hand with other axes:
    ``python -m nas.report.collect``."""

    enabled: bool = True
    metric: str = "test_acc"  # test_acc | search_val_acc: the figures' accuracy axis
    cost: str = "macs"  # macs | params | latency_ms: the Pareto front's cost axis
    wandb: str = "auto"  # auto (as the jobs logged) | offline | online | none


@dataclass
class CheckpointConfig:
    """Besides every epoch's end, ``last.ckpt`` is also written every ``every_n_steps``
    training batches and every ``every_minutes`` minutes inside an epoch (0: off), for epochs
    too long to lose (``nas/run/checkpointing.py``)."""

    every_n_steps: int = 0  # every N training batches (0 = off)
    every_minutes: float = 0.0  # every N minutes (0 = off)


@dataclass
class ChanceConfig:
    """Whether the search beat chance (``nas/run/chance.py``): after the pipeline's retrain,
    ``cells`` random genotypes with the found one's parameter-free op count per cell are
    trained with the same recipe and seed, and ``summary.json`` gets their test accuracies and
    a verdict. 0 = off (the default; the digits scale turns it on)."""

    cells: int = 0


@dataclass
class EstimateConfig:
    """``stage=estimate``: zero-cost proxies score architectures without training them
    (``nas/run/estimate_stage.py``, ``nas/estimate``).

    Attributes:
        proxies: registered proxy names (``nas/estimate/proxies``): params, flops, synflow,
            snip, grasp, fisher, grad_norm, jacov, nwot, zen, zico, meco, l2_norm.
        archs: a file of architectures, one per line (a space's text form or a genotype JSON
            object); None: ``sample``.
        sample: N random architectures, or ``all`` (an enumerable space: nb201's 15,625).
        batches: training batches the data-based proxies read (0: data-free proxies only).
        batch_size: images per batch.
        figures: a histogram / scatter PNG per proxy.
        workers: processes that score (CPU).
        (The keys below: ground truth, predictor, funnel and black-box search.)
    """

    proxies: list[str] = field(default_factory=lambda: ["synflow", "nwot", "params", "flops"])
    archs: Optional[str] = None  # noqa: UP045
    sample: Any = 100
    batches: int = 1
    batch_size: int = 64
    figures: bool = True
    # Processes scoring on the CPU (one torch thread each): scoring is mostly Python, so 2
    # processes on 2 cores score ~1.8x as many architectures per second as 1.
    workers: int = 1
    # Ground truth (nas/run/estimate_truth.py): a CSV with an arch/genotype column and
    # truth_column (a multirun's results_jobs.csv) or a NAS-Bench-201 file (dataset's test
    # accuracy): every column's Spearman ρ, Kendall τ, top-k % precision.
    truth: Optional[str] = None  # noqa: UP045
    truth_column: str = "test_acc"
    dataset: str = "cifar10"  # a benchmark's dataset: cifar10 | cifar100 | ImageNet16-120
    top_k_percent: float = 10.0
    # A predictor (rf | gb | gp | mlp) trained on the truth CSV's architectures, reported by
    # cross-validated ρ / τ, ranking every estimated architecture (predictions.csv).
    predictor: Optional[str] = None  # noqa: UP045
    encoding: str = "auto"  # onehot | path (cell spaces) | auto: path where it applies
    predictor_features: list[str] = field(default_factory=list)  # proxies as extra features
    predictor_train: int = 100  # truth = a benchmark file: random cells looked up to train on
    folds: int = 5
    # The funnel: the top_k architectures by rank_by (a proxy, or predictor) as genotype files
    # in top/, each retrainable: python train.py -m stage=retrain genotype=<files>.
    top_k: int = 0
    rank_by: Optional[str] = None  # noqa: UP045 - None: the first proxy
    # Black-box search over an estimator (nas/run/black_box_stage.py) instead of a list:
    # random | evolution | local_search | bananas, spending budget evaluations of objective
    # (a proxy, benchmark or predictor). The methods' own options follow.
    search: Optional[str] = None  # noqa: UP045
    budget: int = 100
    objective: str = "synflow"  # a proxy | benchmark | predictor | supernet
    supernet: Optional[str] = None  # noqa: UP045 - objective=supernet: a search run dir / last.ckpt
    population: int = 10  # evolution (Real et al. 2019; NAS-Bench-201's REA: 10 and 3)
    sample_size: int = 3  # evolution: the tournament
    first_improvement: bool = True  # local_search: move at the first better neighbour
    # bananas (White et al., AAAI 2021; the released code's values): initial random
    # architectures, ensemble size, candidates per iteration mutated from the best num_parents
    # (plus random_candidates), acquisition its | ucb, evaluations per iteration, the
    # surrogate (metann: the paper's 10x20 network trained for epochs; or rf | gb | gp | mlp).
    num_init: int = 10
    ensemble: int = 5
    candidates: int = 100
    num_parents: int = 5
    random_candidates: int = 0
    acquisition: str = "its"
    batch: int = 1
    surrogate: str = "metann"
    epochs: int = 150


@dataclass
class Config:
    """The root node. ``conf/config.yaml`` picks the groups and states what differs from here."""

    # pipeline | search | discretize | retrain | profile | latency | estimate
    stage: Stage = Stage.pipeline
    seed: int = 0
    # torch CPU threads: auto (as many as CPUs are idle at the start: 1 when another job holds a
    # core; nas/run/threads.py), N, or None (torch's default). Typed Any for the string auto;
    # nas.run.threads.parse validates.
    threads: Any = "auto"
    resume: Optional[str] = None  # noqa: UP045 - auto (run dir's last.ckpt) or a checkpoint path
    # A non-finite loss or gradient: stop the run (the last good checkpoint is kept), or skip
    # the step and count it.
    nonfinite: NonFinite = NonFinite.stop
    # NHWC memory format for the networks and their batches: true | false | auto (on when the run
    # is on the CPU, where oneDNN's NHWC convolutions made search steps ~1.46x faster; off on a
    # GPU, where it measured 8-15% slower).
    channels_last: Any = "auto"
    compile: bool = False  # torch.compile the supernet / child network (static-graph strategies)
    compile_mode: str = "default"  # default | reduce-overhead (CUDA graphs on GPU) | max-autotune
    compile_scope: str = "edge"  # supernet: edge (graphs shared by same-shape edges) | model
    cuda_graph: bool = False  # search: replay the supernet's passes as CUDA graphs (one GPU)
    # The value train.py returns to a sweeper: auto (stage=search: search_val_acc; retrain,
    # pipeline: test_acc; other stages: none) or the name of a numeric summary.json field.
    objective: str = "auto"
    # A zoo name (darts_v1, darts_v2) or a genotype.json path, for stage=retrain / profile.
    genotype: Optional[str] = None  # noqa: UP045
    alphas: Optional[str] = None  # noqa: UP045 - alphas.json path (stage=discretize)
    search_space: SearchSpaceConfig = field(default_factory=SearchSpaceConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    data: DataConfig = MISSING  # DataConfig has mandatory fields: conf/data/<name>.yaml sets them
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    costs: CostsConfig = field(default_factory=CostsConfig)
    constraint: ConstraintConfig = field(default_factory=ConstraintConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    chance: ChanceConfig = field(default_factory=ChanceConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    # Estimators (nas/estimate) that score the found genotype beside weight sharing, each where
    # it applies to the space; summary.json records each under its name. benchmark: the
    # space's tabular benchmark (NAS-Bench-201 for nb201).
    estimators: list[str] = field(default_factory=lambda: ["benchmark"])
    estimate: EstimateConfig = field(default_factory=EstimateConfig)


def register_configs() -> None:
    """Stores the schemas; ``conf/config.yaml`` lists ``base_config`` first in its defaults.
    Call it again after ``supernet.spaces.register_space`` so the new space's keys are in."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=config_schema())
    cs.store(group="data", name="base_data", node=DataConfig)


def config_schema() -> type:
    """``Config``, or where a registered space takes keys ``SearchSpaceConfig`` lacks, a
    ``Config`` whose ``search_space`` node also holds them (typed from the space's constructor,
    at its defaults; ``supernet.spaces.check_options`` still refuses another space's keys)."""
    extra = space_fields()
    if not extra:
        return Config
    # Module-level names, so that a config holding them pickles (spawned worker processes).
    global ExtendedSearchSpaceConfig, ExtendedConfig
    node = dataclasses.make_dataclass(
        "ExtendedSearchSpaceConfig", extra, bases=(SearchSpaceConfig,)
    )
    config = dataclasses.make_dataclass(
        "ExtendedConfig", [("search_space", node, field(default_factory=node))], bases=(Config,)
    )
    for cls in (node, config):
        cls.__module__ = __name__
    ExtendedSearchSpaceConfig, ExtendedConfig = node, config
    return config


# Constructor annotations a search_space key may have, as OmegaConf types them.
_KEY_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def space_fields() -> list[tuple[str, Any, Any]]:
    """(key, type, field) of every registered space's constructor keyword that
    ``SearchSpaceConfig`` lacks. A type other than int / float / bool / str (or one of them
    or None) is typed ``Any``; a list or tuple default becomes a list."""
    from supernet.spaces import SPACES, space_defaults

    known = {f.name for f in dataclasses.fields(SearchSpaceConfig)}
    out: dict[str, tuple[str, Any, Any]] = {}
    for name, cls in SPACES.items():
        annotations = {
            p.name: str(p.annotation) for p in inspect.signature(cls).parameters.values()
        }
        for key, default in space_defaults(name).items():
            if key in known or key in out:
                continue
            text = annotations[key].replace(" ", "")
            optional = text.endswith("|None") or text.startswith("Optional[")
            base = _KEY_TYPES.get(text.removesuffix("|None"), Any)
            kind = Optional[base] if optional and base is not Any else base  # noqa: UP045
            if default is inspect.Parameter.empty:
                spec = field(default=MISSING)
            elif isinstance(default, (list, tuple)):
                spec = field(default_factory=lambda d=tuple(default): list(d))
            else:
                spec = field(default=default)
            out[key] = (key, kind, spec)
    return list(out.values())


# Keys of an instantiated node that Hydra's ``instantiate`` reads itself.
INSTANTIATE_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def check_known_keys(cfg: DictConfig) -> None:
    """Refuses keys that nothing reads. The typed schema refuses ``strategy.lrr=0.1``, but
    Hydra's ``+key`` / ``++key`` add keys to a typed node anyway; this compares the composed
    config with the schema (and an instantiated node's keys with its target's arguments)."""
    problems: list[str] = []
    _check_node(cfg, "", problems)
    if problems:
        raise ValueError(" ".join(problems))


def _check_node(node: Any, key: str, problems: list[str]) -> None:
    if isinstance(node, ListConfig):
        for i in range(len(node)):
            _check_child(node, i, f"{key}[{i}]", problems)
        return
    if not isinstance(node, DictConfig) or node._is_none() or node._is_missing():
        return
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        _compare(node, key, [f.name for f in dataclasses.fields(schema)], "", problems)
    elif "_target_" in node and not OmegaConf.is_interpolation(node, "_target_"):
        _check_target(node, key, problems)
    for child in node:
        if key or child != "hydra":  # Hydra's own node is Hydra's to check
            _check_child(node, child, f"{key}.{child}" if key else str(child), problems)


def _check_child(node: Any, child: Any, key: str, problems: list[str]) -> None:
    if not OmegaConf.is_interpolation(node, child) and not OmegaConf.is_missing(node, child):
        _check_node(node._get_node(child), key, problems)


def _compare(node: DictConfig, key: str, valid: list[str], target: str, problems: list[str]):
    """Records each key of ``node`` outside ``valid`` (``target``: the instantiated class)."""
    takes = f"{key} takes" if key else "the top-level keys are"
    for name in node:
        if name in valid or name in INSTANTIATE_KEYS or (not key and name == "hydra"):
            continue
        full = f"{key}.{name}" if key else name
        value = "???" if OmegaConf.is_missing(node, name) else node._get_node(name)._value()
        why = f"is not an argument of {target}" if target else "is not a config key"
        problems.append(
            f"{full}={value!r} {why} (nothing reads it); {takes}: "
            f"{', '.join(valid) or 'no arguments'}."
        )


def _check_target(node: DictConfig, key: str, problems: list[str]) -> None:
    """An instantiated node's keys must be arguments of its ``_target_`` (unless it takes
    ``**kwargs``); an unknown one would fail at instantiation, or never with ``_partial_``."""
    target = node["_target_"]
    try:
        params = inspect.signature(get_object(target)).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError) as err:
        problems.append(f"{key}._target_={target!r} cannot be loaded: {err}.")
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    _compare(node, key, [p.name for p in params if p.name != "self"], target, problems)
