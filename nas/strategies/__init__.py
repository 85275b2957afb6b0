"""Search strategies as compositions: sampler + arch-gradient mode + modifiers + regularizers +
selection rule (or a model-based selector).

See DESIGN.md: a method is a composition configured in ``conf/strategy/<method>.yaml``, not a
fork of the search loop. ``Strategy`` only wires the components together:

- ``mixing(arch)``: the sampler's mixing of α, then each modifier's change (edge weights, pruning);
- ``probabilities(arch)``: the distribution that is logged and discretized;
- ``supernet_options()`` / ``arch_options()``: what modifiers need built (partial channels, β);
- ``setup(space, seed)``: seeds every random component and gives it the space;
- ``on_epoch_start(...)``: schedules (temperature, regularizer strengths) and progressive
  steps (pruning);
- ``weight_step_arch(module, arch, batch)``: the α the weight step mixes with (SDARTS' random
  or adversarial perturbation; α itself unless a modifier perturbs it);
- ``after_arch_step(arch)``: after the α optimizer's step, components that adjust α in place
  (ProxylessNAS' rescaling of the two sampled paths) do it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from nas.core.arch import split_arch
from nas.strategies.samplers import Mixing, Sampler, SoftmaxSampler

__all__ = ["Mixing", "Sampler", "SoftmaxSampler", "Strategy"]


@dataclass
class Strategy:
    """A built strategy.

    Attributes:
        name: the strategy's name (as in ``strategy=<name>``).
        sampler: α → mixing weights.
        arch_grad: computes the α gradient; None = α is not learned (RSWS, SPOS).
        selection: selection rule name, or None for the space's default.
        regularizers: callables ``(arch) -> loss`` added to the arch objective.
        modifiers: partial channels, edge normalization, progressive pruning, ...
        selector: optional model-based post-search selection ``(supernet, batches) -> (arch,
            info)`` (RSWS' random sampling, SPOS' evolution) on the validation split.
    """

    name: str
    sampler: Sampler
    arch_grad: Any = None
    selection: str | None = None
    regularizers: list[Any] = field(default_factory=list)
    modifiers: list[Any] = field(default_factory=list)
    selector: Any = None

    def components(self) -> list[Any]:
        return [self.sampler, *self.modifiers, *self.regularizers, self.selector]

    def setup(self, space=None, seed: int = 0) -> None:
        """Gives every component the space and a seed (each derives its own stream)."""
        for c in self.components():
            if c is not None and hasattr(c, "setup"):
                c.setup(seed=seed, space=space)

    def supernet_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.modifiers:
            out.update(getattr(m, "supernet_options", dict)())
        return out

    def check_supernet(self, supernet) -> None:
        """Lets components that reshape the supernet later (DrNAS' K switch) refuse it now."""
        for m in self.modifiers:
            if hasattr(m, "check_supernet"):
                m.check_supernet(supernet)

    def arch_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.modifiers:
            out.update(getattr(m, "arch_options", dict)())
        return out

    def mixing(self, arch: dict[str, torch.Tensor]) -> Mixing:
        alphas, _ = split_arch(arch)
        mix = self.sampler(alphas)
        for m in self.modifiers:
            if hasattr(m, "mixing"):
                mix = m.mixing(mix, arch)
        return mix

    def probabilities(self, arch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        alphas, _ = split_arch(arch)
        probs = self.sampler.probabilities(alphas)
        for m in self.modifiers:
            if hasattr(m, "probabilities"):
                probs = m.probabilities(probs, arch)
        return probs

    def updates_arch(self, epoch: int) -> bool:
        """Whether α takes steps in ``epoch`` (False in a component's warm-up, e.g. the first
        epochs of each DrNAS stage); the strategy-wide ``arch_start_epoch`` is the search's."""
        return all(m.updates_arch(epoch) for m in self.modifiers if hasattr(m, "updates_arch"))

    def on_epoch_start(self, epoch: int, max_epochs: int, module=None) -> None:
        self.sampler.on_epoch_start(epoch, max_epochs)
        for m in self.modifiers:
            if hasattr(m, "on_epoch_start"):
                m.on_epoch_start(epoch, max_epochs, module)
        for r in self.regularizers:
            if hasattr(r, "on_epoch_start"):
                r.on_epoch_start(epoch, max_epochs)

    def weight_step_arch(
        self, module, arch: dict[str, torch.Tensor], batch
    ) -> dict[str, torch.Tensor]:
        """The (detached) α the weight step mixes with: each modifier with
        ``perturb_weight_step(module, arch, batch)`` may return a perturbed copy (SDARTS)."""
        for m in self.modifiers:
            if hasattr(m, "perturb_weight_step"):
                arch = m.perturb_weight_step(module, arch, batch)
        return arch

    def after_arch_step(self, arch: dict[str, torch.Tensor]) -> None:
        """Called by the search right after each α optimizer step (not after a skipped one):
        each component with ``after_arch_step(alphas)`` may adjust α in place (ProxylessNAS'
        ``BinaryGateSampler`` rescales the paths its arch step sampled)."""
        alphas, _ = split_arch(arch)
        for c in self.components():
            if c is not None and hasattr(c, "after_arch_step"):
                c.after_arch_step(alphas)

    def state_dict(self) -> dict[str, Any]:
        """Random-stream and schedule states, for exact resume from a checkpoint."""
        return {
            str(i): c.state_dict()
            for i, c in enumerate(self.components())
            if c is not None and hasattr(c, "state_dict")
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, c in enumerate(self.components()):
            if str(i) in state and hasattr(c, "load_state_dict"):
                c.load_state_dict(state[str(i)])

    def restore(self, module) -> None:
        """After ``load_state_dict`` on resume, before the weights are loaded: components that
        reshape the supernet (DrNAS' K change) redo it."""
        for c in self.components():
            if c is not None and hasattr(c, "restore"):
                c.restore(module)
