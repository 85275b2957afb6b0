"""Search strategies as compositions: sampler + arch-gradient mode + modifiers + regularizers +
selection rule (or a model-based selector).

See ARCHITECTURE.md: a method is a composition configured in ``conf/strategy/<method>.yaml``, not a
fork of the search loop. Each component kind has its contract in ``nas/strategies/protocols.py``
(a base class whose optional hooks are no-ops), so ``Strategy`` calls every hook of every
component unconditionally; it only wires the components together:

- ``mixing(arch)``: the sampler's mixing of α, then each modifier's change (edge weights, pruning);
- ``probabilities(arch)``: the distribution that is logged and discretized;
- ``supernet_options()`` / ``arch_options()``: what modifiers need built (partial channels, β);
- ``setup(space, seed)``: seeds every random component and gives it the space;
- ``on_epoch_start(...)``: schedules (temperature, regularizer strengths) and progressive
  steps (pruning);
- ``arch_objective(loss, arch, masks)``: the α objective: the additive regularizers, then each
  ``ObjectiveRegularizer``'s ``combine`` (ProxylessNAS' and FBNet's multiplicative penalties);
- ``weight_step_arch(state, arch, batch)``: the α the weight step mixes with (SDARTS' random
  or adversarial perturbation; α itself unless a modifier perturbs it);
- ``after_arch_step(arch)``: after the α optimizer's step, components that adjust α in place
  (ProxylessNAS' rescaling of the two sampled paths) do it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nas.core.arch import split_arch
from nas.strategies.protocols import (
    Arch,
    ArchGradMode,
    Batch,
    Component,
    Mixing,
    Modifier,
    ObjectiveRegularizer,
    Regularizer,
    Sampler,
    SearchState,
    Selector,
)
from nas.strategies.samplers import SoftmaxSampler

__all__ = ["Mixing", "Sampler", "SoftmaxSampler", "Strategy"]


@dataclass
class Strategy:
    """A built strategy.

    Attributes:
        name: the strategy's name (as in ``strategy=<name>``).
        sampler: α → mixing weights.
        arch_grad: computes the α gradient; None = α is not learned (RSWS, SPOS).
        selection: selection rule name, or None for the space's default.
        regularizers: terms of the arch objective (``Regularizer``, ``ObjectiveRegularizer``).
        modifiers: partial channels, edge normalization, progressive pruning, ...
        selector: optional model-based post-search selection ``(supernet, batches) -> (arch,
            info)`` (RSWS' random sampling, SPOS' evolution) on the validation split.
    """

    name: str
    sampler: Sampler
    arch_grad: ArchGradMode | None = None
    selection: str | None = None
    regularizers: list[Regularizer] = field(default_factory=list)
    modifiers: list[Modifier] = field(default_factory=list)
    selector: Selector | None = None

    def __post_init__(self) -> None:
        """Each component must fulfil its contract: the hooks below are called unchecked."""
        checks: list[tuple[str, Any, type]] = [
            ("sampler", self.sampler, Sampler),
            ("arch_grad", self.arch_grad, ArchGradMode),
            ("selector", self.selector, Selector),
            *((f"regularizers[{i}]", r, Regularizer) for i, r in enumerate(self.regularizers)),
            *((f"modifiers[{i}]", m, Modifier) for i, m in enumerate(self.modifiers)),
        ]
        for where, c, contract in checks:
            if c is not None and not isinstance(c, contract):
                raise TypeError(
                    f"strategy {self.name!r}: {where} is a {type(c).__qualname__}, which does "
                    f"not subclass nas.strategies.protocols.{contract.__name__}; subclass it "
                    "(its optional hooks are no-ops)."
                )

    def components(self) -> list[Component]:
        """The stateful components, in checkpoint order (the selector last, when present)."""
        out: list[Component] = [self.sampler, *self.modifiers, *self.regularizers]
        return out if self.selector is None else [*out, self.selector]

    def setup(self, space=None, seed: int = 0) -> None:
        """Gives every component the space and a seed (each derives its own stream)."""
        self.column_masks = None if space is None else space.column_masks()
        for c in self.components():
            c.setup(seed=seed, space=space)

    def masked(self, alphas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """α with the columns a row does not have (``SearchSpace.choice_counts``: a ``module``
        space's decisions with fewer choices than the longest) at -inf, so that every sampler
        gives them weight and probability 0 and never samples them (softmax, Gumbel, σ;
        DrNAS' Dirichlet renormalizes over the real ones). α itself keeps finite values."""
        masks = getattr(self, "column_masks", None)
        if not masks:
            return alphas
        out = dict(alphas)
        for cell, m in masks.items():
            if cell in out:
                a = out[cell]
                out[cell] = a.masked_fill(~m.to(a.device), float("-inf"))
        return out

    def supernet_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.modifiers:
            out.update(m.supernet_options())
        return out

    def check_supernet(self, supernet: nn.Module) -> None:
        """Lets components that reshape the supernet later (DrNAS' K switch) refuse it now."""
        for m in self.modifiers:
            m.check_supernet(supernet)

    def arch_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.modifiers:
            out.update(m.arch_options())
        return out

    def mixing(self, arch: Arch) -> Mixing:
        alphas, _ = split_arch(arch)
        mix = self.sampler(self.masked(alphas))
        for m in self.modifiers:
            mix = m.mixing(mix, arch)
        return mix

    def probabilities(self, arch: Arch) -> dict[str, torch.Tensor]:
        alphas, _ = split_arch(arch)
        probs = self.sampler.probabilities(self.masked(alphas))
        for m in self.modifiers:
            probs = m.probabilities(probs, arch)
        return probs

    def arch_objective(
        self, loss: torch.Tensor, arch: Arch, masks: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The α objective from the cross-entropy ``loss``: ``loss`` plus the additive
        regularizers, then each ``ObjectiveRegularizer``'s ``combine(loss, arch, masks)`` in
        turn (the multiplicative hardware penalties of ProxylessNAS and FBNet scale the loss)."""
        additive = [r for r in self.regularizers if not isinstance(r, ObjectiveRegularizer)]
        loss = loss + sum((r(arch) for r in additive), 0.0)
        for r in self.regularizers:
            if isinstance(r, ObjectiveRegularizer):
                loss = r.combine(loss, arch, masks)
        return loss

    def updates_arch(self, epoch: int) -> bool:
        """Whether α takes steps in ``epoch`` (False in a component's warm-up, e.g. the first
        epochs of each DrNAS stage); the strategy-wide ``arch_start_epoch`` is the search's."""
        return all(m.updates_arch(epoch) for m in self.modifiers)

    def on_epoch_start(self, epoch: int, max_epochs: int, state: SearchState | None = None) -> None:
        self.sampler.on_epoch_start(epoch, max_epochs)
        for m in self.modifiers:
            m.on_epoch_start(epoch, max_epochs, state)
        for r in self.regularizers:
            r.on_epoch_start(epoch, max_epochs)

    def weight_step_arch(self, state: SearchState, arch: Arch, batch: Batch) -> Arch:
        """The (detached) α the weight step mixes with: each modifier's
        ``perturb_weight_step(state, arch, batch)`` may return a perturbed copy (SDARTS)."""
        for m in self.modifiers:
            arch = m.perturb_weight_step(state, arch, batch)
        return arch

    def after_arch_step(self, arch: Arch) -> None:
        """Called by the search right after each α optimizer step (not after a skipped one):
        the sampler and each modifier may adjust α in place (ProxylessNAS'
        ``BinaryGateSampler`` rescales the paths its arch step sampled)."""
        alphas, _ = split_arch(arch)
        self.sampler.after_arch_step(alphas)
        for m in self.modifiers:
            m.after_arch_step(alphas)

    def state_dict(self) -> dict[str, Any]:
        """Random-stream and schedule states, for exact resume from a checkpoint."""
        return {str(i): c.state_dict() for i, c in enumerate(self.components())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, c in enumerate(self.components()):
            if str(i) in state:
                c.load_state_dict(state[str(i)])

    def restore(self, state: SearchState) -> None:
        """After ``load_state_dict`` on resume, before the weights are loaded: modifiers that
        reshape the supernet (DrNAS' K change) redo it."""
        for m in self.modifiers:
            m.restore(state)
