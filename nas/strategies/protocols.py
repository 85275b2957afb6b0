"""The contracts of a strategy's components, and the search state they may see.

A search method is a composition (``Strategy``, ``nas/strategies/__init__.py``): a **sampler**
(α → mixing weights), an **arch-gradient mode** (fills α's gradient), **modifiers** (change the
supernet, the mixing or the weight step's α), **regularizers** (terms of the α objective), a
**selection rule** (probabilities → genotype) or a model-based **selector** (RSWS, SPOS). Each
kind is a small base class here whose optional hooks are no-ops, so ``Strategy`` calls every
hook unconditionally and a new component overrides only what it changes.

The arch-gradient modes and the modifiers' hooks see the search through ``ArchGradState`` and
``SearchState``: the supernet, α, the loss and α objective, the weight optimizer (whose step
second-order DARTS unrolls), and not the LightningModule that implements them
(``nas.search.module.SearchModule``), so this package never imports ``nas.search``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:
    from nas.core.arch import ArchParams
    from nas.strategies import Strategy

Batch = tuple[torch.Tensor, torch.Tensor]
Arch = dict[str, torch.Tensor]  # per cell type α (and β, PC-DARTS' edge weights)

__all__ = [
    "Arch",
    "ArchGradMode",
    "ArchGradState",
    "Batch",
    "Component",
    "Mixing",
    "Modifier",
    "ObjectiveRegularizer",
    "Regularizer",
    "Sampler",
    "SearchState",
    "SelectionRule",
    "Selector",
]


# ---- what a component sees of the search ---------------------------------------------------
@runtime_checkable
class ArchGradState(Protocol):
    """What an arch-gradient mode needs of the search: the supernet and α, the loss (optionally
    at replaced weights: second-order DARTS' virtual step), the α objective (loss plus the
    regularizers) and the weight optimizer whose next step second order unrolls."""

    supernet: nn.Module
    arch: ArchParams

    @property
    def weight_optimizer(self) -> torch.optim.Optimizer: ...

    def loss(
        self,
        batch: Batch,
        alphas: Arch,
        params: dict[str, torch.Tensor] | None = None,
        graphable: bool = False,
        label_smoothing: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and logits of the supernet mixed from ``alphas``."""
        ...

    def arch_objective(self, loss: torch.Tensor) -> torch.Tensor:
        """The α objective from the cross-entropy ``loss`` (the strategy's regularizers)."""
        ...


@runtime_checkable
class SearchState(ArchGradState, Protocol):
    """What a modifier's hooks may read or change of the search, beyond ``ArchGradState``: the
    strategy (SDARTS checks its sampler), the α warm-up (P-DARTS' skip dropout schedule) and
    the current op distribution (progressive pruning)."""

    strategy: Strategy
    arch_start_epoch: int

    def probabilities(self) -> dict[str, torch.Tensor]: ...


# ---- components ------------------------------------------------------------------------------
class Component:
    """What every stateful component offers: ``setup`` (the space and a seed, from which it
    derives its own random stream) and its state for exact resume from a checkpoint."""

    def setup(self, seed: int = 0, space: Any = None, **_: Any) -> None:
        """Called once, before the supernet is built."""

    def state_dict(self) -> dict[str, Any]:
        """Random-stream and schedule state (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores ``state_dict``'s output."""


@dataclass
class Mixing:
    """What the supernet mixes with.

    Attributes:
        weights: per cell type, ``[edges, ops]`` mixing weights (differentiable in α).
        active: optional, per cell type and edge, the op indices to compute (None = all,
            ``[]`` = the edge is not used).
        edge_weights: optional, per cell type, ``[edges]`` factors applied to each edge's whole
            output (PC-DARTS' edge normalization).
    """

    weights: dict[str, torch.Tensor]
    active: dict[str, Sequence[Sequence[int] | None]] | None = None
    edge_weights: dict[str, torch.Tensor] | None = None


class Sampler(Component):
    """Turns α into mixing weights. Subclasses implement ``__call__`` and cite their paper.

    Samplers that draw random numbers draw them once per call (one forward pass) from their
    own generator, seeded by ``setup``, so a seed fixes the search on CPU. New samplers are
    registered by name with ``nas.strategies.samplers.register_sampler``.
    """

    generator: torch.Generator | None = None
    # True for single-path samplers: a different set of ops runs every forward pass, which a
    # static compiled graph cannot follow (``compile=true`` leaves their supernet eager).
    samples_paths: ClassVar[bool] = False
    # For the report: weights that are not a distribution over a row (σ(α) of FairDARTS) and
    # the weight of an α no gradient has moved (the heatmaps' centre); the temperature, if any.
    independent_weights: ClassVar[bool] = False
    neutral_weight: ClassVar[float | None] = None
    tau: float | None = None

    def setup(self, seed: int = 0, space: Any = None, **_: Any) -> None:
        """Seeds the sampler's own random stream."""
        self.generator = torch.Generator().manual_seed(seed + 104729)

    def __call__(self, alphas: Arch) -> Mixing:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(alphas).")

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Hook for schedules (e.g. Gumbel temperature)."""

    def probabilities(self, alphas: Arch) -> dict[str, torch.Tensor]:
        """The per-edge op distribution that is logged and discretized (softmax by default)."""
        return {k: torch.softmax(a.detach().float(), dim=-1) for k, a in alphas.items()}

    def after_arch_step(self, alphas: Arch) -> None:
        """Right after each α optimizer step: adjust α in place (ProxylessNAS' rescaling)."""

    def state_dict(self) -> dict[str, Any]:
        return {} if self.generator is None else {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator"])

    def _rand(self, like: torch.Tensor) -> torch.Tensor:
        """Uniform (0, 1) noise of ``like``'s shape from the sampler's CPU generator."""
        if self.generator is None:
            self.setup()
        u = torch.rand(like.shape, generator=self.generator, dtype=torch.float64)
        return u.clamp_(1e-10, 1 - 1e-10).to(device=like.device, dtype=like.dtype)


class ArchGradMode:
    """Computes α's gradient: fills ``.grad`` of every architecture parameter of
    ``state.arch`` and returns the (detached) loss and logits of the α step."""

    def __call__(
        self, state: ArchGradState, train: Batch, val: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__.")


class Modifier(Component):
    """A change a method adds on top of its sampler; every hook is optional (a no-op here)."""

    def supernet_options(self) -> dict[str, Any]:
        """Options of ``space.build_supernet`` (PC-DARTS' partial channels)."""
        return {}

    def arch_options(self) -> dict[str, Any]:
        """Options of ``ArchParams`` (PC-DARTS' edge β)."""
        return {}

    def check_supernet(self, supernet: nn.Module) -> None:
        """Refuses a supernet this modifier will reshape later and cannot (DrNAS' K)."""

    def mixing(self, mix: Mixing, arch: Arch) -> Mixing:
        """Transforms the sampler's mixing (edge weights, pruned ops, perturbed weights)."""
        return mix

    def probabilities(self, probs: dict[str, torch.Tensor], arch: Arch) -> dict[str, torch.Tensor]:
        """Transforms the logged and discretized distribution."""
        return probs

    def updates_arch(self, epoch: int) -> bool:
        """False in this modifier's α warm-up (the first epochs of each DrNAS stage)."""
        return True

    def on_epoch_start(self, epoch: int, max_epochs: int, state: SearchState | None = None) -> None:
        """Schedules and progressive steps (pruning, K switches: these need ``state``)."""

    def perturb_weight_step(self, state: SearchState, arch: Arch, batch: Batch) -> Arch:
        """The (detached) α the weight step mixes with (SDARTS: a perturbed copy)."""
        return arch

    def after_arch_step(self, alphas: Arch) -> None:
        """Right after each α optimizer step: adjust α in place."""

    def restore(self, state: SearchState) -> None:
        """After ``load_state_dict`` on resume, before the weights load: redo reshapes."""

    def set_stage(self, index: int, stage: Any) -> None:
        """At the start of each progressive-depth stage (P-DARTS, ``nas/run/progressive_depth``)."""


class Regularizer(Component):
    """An additive term of the α objective: ``__call__(arch) -> loss``."""

    def __call__(self, arch: Arch) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(arch).")

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        """Schedules of the regularizer's strength (β-decay)."""


class ObjectiveRegularizer(Regularizer):
    """A regularizer that forms the α objective from the loss itself (the multiplicative
    hardware penalties of ProxylessNAS and FBNet): applied after the additive ones, in turn."""

    def combine(
        self, loss: torch.Tensor, arch: Arch, masks: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement combine.")


@runtime_checkable
class SelectionRule(Protocol):
    """α (as per-edge probabilities) → genotype: ``rule(probs, space)``; registered by name in
    ``nas.strategies.selection.SELECTION_RULES`` (``register_selection_rule``)."""

    def __call__(self, probs: dict[str, torch.Tensor], space: Any) -> Any: ...


class Selector(Component):
    """Model-based post-search selection (RSWS' random sampling, SPOS' evolution): scores
    architectures with the trained supernet on ``eval_batches`` validation batches."""

    eval_batches: int = 1

    def __call__(
        self, supernet: nn.Module, batches: Sequence[Batch]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Returns (the chosen architecture, a report)."""
        raise NotImplementedError(f"{type(self).__name__} must implement __call__.")
