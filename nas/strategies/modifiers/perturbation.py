"""SDARTS: perturbation-based regularization of the weight step (Chen & Hsieh, "Stabilizing
Differentiable Architecture Search via Perturbation-based Regularization", ICML 2020, sec. 4).

The supernet weights are trained at a perturbed architecture, ``min_w E/max_{‖δ‖≤ε}
L_train(w, Ā + δ)``, which smooths the validation loss landscape in α. Following the official
code (xiangning-chen/SmoothDARTS, sota/cnn/train_search.py, attacker/perturb.py):

- the perturbation is applied to the **softmax-ed** weights Ā = softmax(α)
  (``model.softmax_arch_parameters()``), not to α; the weight step then mixes with the perturbed
  weights directly (``updateType='weight'``), with no second softmax;
- after every change the weights are projected back as ``Network.clip()`` does: each edge's
  row is clamped to [0, 1] and divided by its sum (if it is all zero, its largest entry before
  the clamp becomes 1), so the mixing stays a distribution. The clip can move entries by more
  than ε; the *drawn / stepped* δ stays within ``[-ε, ε]`` (``clip=False`` keeps the result in
  the ball itself);
- ε grows linearly over the search: ``ε_e = 0.03 + (ε_max − 0.03) · e / T`` at the start of
  epoch e of T (``--epsilon_alpha 0.3``);
- a fresh perturbation every weight step (``perturb_alpha`` is called once per step);
- the arch step is not perturbed (``architect.step`` runs before ``softmax_arch_parameters``).

SDARTS-RS (``RandomSmoothing``): δ ~ U[-ε, ε] per entry. SDARTS-ADV (``AdversarialPerturbation``,
``Linf_PGD_alpha``): from a uniform random start, 7 steps of signed gradient ascent on the
training loss with step size 2ε/7, each projected onto the ε-ball around Ā and clipped; the
attack runs with the supernet in eval mode, and if it ends below the loss at Ā the
unperturbed Ā is used.

**How it plugs in.** ``perturb_weight_step(state, arch, batch)`` returns α unchanged plus the
perturbed mixing weights under ``"weights/<cell type>"`` (``split_arch`` ignores such keys); this
modifier's own ``mixing`` hook substitutes them for the sampler's weights. Place it first among
the modifiers so later ones (e.g. DARTS-' auxiliary skip) act on the perturbed weights. Random
draws come from the modifier's own generator, seeded by ``setup`` and saved by ``state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch

from nas.core.arch import split_arch
from nas.strategies.arch_grad.first_order import constant_weights
from nas.strategies.protocols import Arch, Batch, Mixing, Modifier, SearchState
from nas.strategies.samplers.softmax import SoftmaxSampler

WEIGHTS_PREFIX = "weights/"


def simplex_clip(w: torch.Tensor) -> torch.Tensor:
    """SDARTS' ``Network.clip()`` per row (edge): clamp to [0, 1], renormalise to sum 1; a row
    clamped to all zeros puts 1 on its largest entry before the clamp."""
    top = w.argmax(-1, keepdim=True)
    c = w.clamp(0.0, 1.0)
    dead = c.sum(-1, keepdim=True) == 0
    c = torch.where(dead, torch.zeros_like(c).scatter(-1, top, 1.0), c)
    return c / c.sum(-1, keepdim=True)


class WeightPerturbation(Modifier):
    """Shared parts of SDARTS-RS and -ADV: the ε schedule, the seeded noise, the substitution.

    Args:
        epsilon: ε at the end of the search (``--epsilon_alpha``, 0.3).
        epsilon_min: ε at epoch 0 (the official schedule's 0.03).
        clip: project onto the simplex after each change (the official ``clip()``).
    """

    seed_offset = 7919

    def __init__(self, epsilon: float = 0.3, epsilon_min: float = 0.03, clip: bool = True):
        if epsilon < 0 or epsilon_min < 0:
            raise ValueError(f"SDARTS needs ε ≥ 0, got epsilon={epsilon}, min={epsilon_min}.")
        self.epsilon_max = float(epsilon)
        self.epsilon_min = float(epsilon_min)
        self.epsilon = float(epsilon_min)
        self.clip = clip
        self.generator: torch.Generator | None = None
        self.last_delta: dict[str, torch.Tensor] = {}  # the δ before the clip, for inspection

    def setup(self, seed: int = 0, **_: Any) -> None:
        self.generator = torch.Generator().manual_seed(seed + self.seed_offset)

    def on_epoch_start(self, epoch: int, max_epochs: int, state: SearchState | None = None) -> None:
        frac = epoch / max(max_epochs, 1)
        self.epsilon = self.epsilon_min + (self.epsilon_max - self.epsilon_min) * frac

    def mixing(self, mix: Mixing, arch: dict[str, torch.Tensor]) -> Mixing:
        for cell, w in mix.weights.items():
            override = arch.get(WEIGHTS_PREFIX + cell)
            if override is not None:
                mix.weights[cell] = override.to(dtype=w.dtype, device=w.device)
        return mix

    def perturb_weight_step(self, state: SearchState, arch: Arch, batch: Batch) -> Arch:
        if not any(m is self for m in state.strategy.modifiers):
            raise ValueError(
                "SDARTS' perturbation must be one of the strategy's modifiers: its mixing hook "
                "puts the perturbed weights in place."
            )
        sampler = state.strategy.sampler
        if not isinstance(sampler, SoftmaxSampler):
            raise TypeError(
                f"SDARTS perturbs softmax(α) (Chen & Hsieh 2020); strategy "
                f"{state.strategy.name!r} mixes with {type(sampler).__name__}. Use the "
                "SoftmaxSampler."
            )
        alphas, _ = split_arch(arch)
        clean = {c: w.detach() for c, w in sampler(alphas).weights.items()}
        weights = self.perturb(state, arch, batch, clean)
        return {**arch, **{WEIGHTS_PREFIX + c: w for c, w in weights.items()}}

    def perturb(
        self, state: SearchState, arch: Arch, batch: Batch, clean: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # ---- pieces ---------------------------------------------------------------------------
    def _project(self, clean: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        delta = delta.clamp(-self.epsilon, self.epsilon)
        return simplex_clip(clean + delta) if self.clip else clean + delta

    def _uniform(self, like: torch.Tensor) -> torch.Tensor:
        """U[-ε, ε] of ``like``'s shape from the modifier's CPU generator."""
        if self.generator is None:
            self.setup()
        u = torch.rand(like.shape, generator=self.generator, dtype=torch.float64)
        return ((2 * u - 1) * self.epsilon).to(device=like.device, dtype=like.dtype)

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epsilon": self.epsilon}
        if self.generator is not None:
            out["generator"] = self.generator.get_state()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epsilon = float(state.get("epsilon", self.epsilon))
        if "generator" in state:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator"])


class RandomSmoothing(WeightPerturbation):
    """SDARTS-RS: Ā + δ, δ ~ U[-ε, ε] per entry, redrawn every weight step, then clipped."""

    def perturb(self, state, arch, batch, clean):
        out = {}
        for cell, w0 in clean.items():
            delta = self._uniform(w0)
            self.last_delta[cell] = delta
            out[cell] = self._project(w0, delta)
        return out


class AdversarialPerturbation(WeightPerturbation):
    """SDARTS-ADV: L∞ PGD on the training batch that maximises the training loss.

    Args:
        steps: PGD steps (official ``Linf_PGD_alpha(..., steps=7)``).
        random_start: start from a uniform point of the ball (official default True).
        eval_mode: run the attack with the supernet in eval mode (``model.eval()`` in the
            official attack; with BN running statistics they normalise, else batch statistics).
    """

    def __init__(
        self,
        epsilon: float = 0.3,
        epsilon_min: float = 0.03,
        clip: bool = True,
        steps: int = 7,
        random_start: bool = True,
        eval_mode: bool = True,
    ):
        super().__init__(epsilon, epsilon_min, clip)
        if steps < 1:
            raise ValueError(f"SDARTS-ADV needs at least one PGD step, got steps={steps}.")
        self.steps = steps
        self.random_start = random_start
        self.eval_mode = eval_mode

    def perturb(self, state, arch, batch, clean):
        net = state.supernet
        was_training = net.training
        if self.eval_mode:
            net.eval()

        def loss_at(weights: dict[str, torch.Tensor]) -> torch.Tensor:
            override = {WEIGHTS_PREFIX + c: w for c, w in weights.items()}
            return state.loss(batch, {**arch, **override})[0]

        step_size = 2 * self.epsilon / self.steps  # the official Linf_SGD lr
        try:
            with constant_weights(net):
                with torch.no_grad():
                    loss_before = loss_at(clean)
                delta = {c: torch.zeros_like(w) for c, w in clean.items()}
                if self.random_start:
                    delta = {c: self._uniform(w) for c, w in clean.items()}
                weights = {c: self._project(clean[c], d) for c, d in delta.items()}
                for _ in range(self.steps):
                    leaves = {c: w.detach().requires_grad_(True) for c, w in weights.items()}
                    grads = torch.autograd.grad(loss_at(leaves), list(leaves.values()))
                    for (c, w), g in zip(leaves.items(), grads):
                        # Ascent on the loss: the official Linf_SGD descends on −loss by sign.
                        delta[c] = (w.detach() + step_size * g.sign() - clean[c]).clamp(
                            -self.epsilon, self.epsilon
                        )
                        weights[c] = self._project(clean[c], delta[c])
                with torch.no_grad():
                    loss_after = loss_at(weights)
            if bool(loss_before > loss_after):  # the attack failed: keep Ā, as the official
                weights = dict(clean)
                delta = {c: torch.zeros_like(w) for c, w in clean.items()}
        finally:
            net.train(was_training)
        self.last_delta = delta
        return weights
