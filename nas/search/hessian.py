"""The dominant eigenvalue of the Hessian of the validation loss w.r.t. α, and DARTS-ES.

Zela et al., "Understanding and Robustifying Differentiable Architecture Search", ICLR 2020
(RobustDARTS; automl/RobustDARTS): the dominant eigenvalue λ_max of ∇²_α L_valid grows as DARTS
overfits α to sharp regions, and the architectures found there degrade. DARTS-ES stops the
search when λ_max's local average grows too fast.

- ``dominant_eigenvalue``: power iteration on exact Hessian-vector products (double backward
  through the loss; the official code builds the whole Hessian and takes ``max(eigvals)``;
  power iteration gives the eigenvalue of largest magnitude, the same in practice, where the
  Hessian of a converging search is dominated by its positive curvature).
- ``module_eigenvalue``: that of the search state's loss (``SearchModule.loss``; any
  ``nas.strategies.protocols.SearchState``) on fixed validation batches, over every cell type's
  α concatenated (β, if any, held constant).
- ``EarlyStopRule``: RobustDARTS' ``EVLocalAvg`` criterion (``src/utils.py`` and
  ``src/search/args.py``): local averages over ``window`` eigenvalues, stop when the current
  one over the one ``delta`` evaluations back exceeds ``factor`` (defaults 5, 4, 1.3, from
  epoch ``es_start_epoch`` = 10); the search returns the architecture of the epoch the earlier
  average stands for. (The paper states it as λ̄(i−k)/λ̄(i) < 0.75, k = 5.)
- ``HessianDiagnostic``: the callback that logs ``hessian/eigenvalue`` every N epochs (and at
  the last), to every logger and to ``search_history.jsonl``; with ``early_stop`` it stops the
  search and rolls α back to the stop epoch's.

Under DDP each rank takes its shard of the fixed validation batches (every world_size-th
sample, as the training sampler splits a global batch), and every Hessian-vector product is
averaged over ranks (``nas.core.distributed``): the power iteration runs on the mean of the ranks'
Hessians, i.e. that of the loss DDP's gradient averaging trains on (BN takes each shard's
batch statistics, as in the search without SyncBN). The iterate, the Rayleigh quotient and the
stopping test are then computed from identical tensors on every rank, so all ranks do the same
number of products and get the same eigenvalue; the callback still takes rank 0's value, so
DARTS-ES decides (``trainer.should_stop``, α's rollback) identically everywhere. In one
process nothing of this runs (no distributed call).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn

from nas.core import distributed
from nas.core.arch import split_arch
from nas.strategies.arch_grad.first_order import constant_weights
from nas.strategies.protocols import SearchState

Batch = tuple[torch.Tensor, torch.Tensor]
METRIC = "hessian/eigenvalue"


def dominant_eigenvalue(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    iters: int = 20,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
    reduce: Callable[[Sequence[torch.Tensor]], Any] | None = distributed.all_reduce_mean_,
) -> float:
    """Power iteration on ``∇²_params loss_fn()``: the eigenvalue of largest magnitude.

    The gradient graph is built once (``create_graph``), so every Hessian-vector product is
    one more backward pass through the same forward (a sampling strategy's draws stay fixed).
    The estimate is the Rayleigh quotient ``vᵀHv`` of the unit iterate ``v``; iteration ends
    after ``iters`` products, or earlier when it changes by less than ``tol`` (relative).

    ``reduce`` averages each product in place over DDP ranks (a no-op in one process; None:
    never), so with the same ``generator`` seed on every rank the iteration is that of the
    mean Hessian, step for step identical on all ranks.
    """
    params = list(params)
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
    v = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]
    norm = torch.sqrt(sum((x * x).sum() for x in v))
    v = [x / norm for x in v]
    estimate = None
    for _ in range(max(1, iters)):
        hv = list(torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True))
        if reduce is not None:
            reduce(hv)  # from here on every rank holds the same tensors
        rayleigh = float(sum((a * b).sum() for a, b in zip(v, hv)))
        norm = float(torch.sqrt(sum((x * x).sum() for x in hv)))
        if norm == 0.0 or not math.isfinite(norm):
            return rayleigh
        v = [x / norm for x in hv]
        done = estimate is not None and abs(rayleigh - estimate) <= tol * abs(rayleigh)
        estimate = rayleigh
        if done:
            break
    return float(estimate)


@contextmanager
def frozen_batch_norm_buffers(net: nn.Module):
    """Restores every BN layer's running statistics afterwards: the extra forward passes of a
    diagnostic leave the training state as it was."""
    bns = [
        m
        for m in net.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in bns]
    try:
        yield
    finally:
        for m, state in zip(bns, saved):
            m.load_state_dict(state)


def module_eigenvalue(
    module: SearchState,
    batches: Sequence[Batch],
    iters: int = 20,
    tol: float = 1e-4,
    seed: int = 0,
    reduce: Callable[[Sequence[torch.Tensor]], Any] | None = distributed.all_reduce_mean_,
) -> float:
    """λ_max of the mean validation loss of ``module`` (the search state) on ``batches``
    w.r.t. all cell types' α; the supernet's weights are constants, BN uses batch statistics
    (training mode, as during the search) and its running statistics are restored. Under DDP
    (``reduce``, see ``dominant_eigenvalue``) that of the mean over ranks of this loss."""
    arch = module.arch.as_dict()
    alphas, _ = split_arch(arch)
    params = list(alphas.values())
    detached = {k: (v if k in alphas else v.detach()) for k, v in arch.items()}

    def loss_fn() -> torch.Tensor:
        losses = [module.loss(b, detached)[0] for b in batches]
        return sum(losses) / len(losses)

    sampler_gen = module.strategy.sampler.generator
    sampler_state = sampler_gen.get_state() if sampler_gen is not None else None
    was_training = module.supernet.training
    module.supernet.train()
    try:
        with constant_weights(module.supernet), frozen_batch_norm_buffers(module.supernet):
            with torch.enable_grad():
                return dominant_eigenvalue(
                    loss_fn, params, iters, tol, torch.Generator().manual_seed(seed), reduce
                )
    finally:
        module.supernet.train(was_training)
        if sampler_state is not None:  # the search's own random stream is left untouched
            sampler_gen.set_state(sampler_state)


class EarlyStopRule:
    """DARTS-ES' criterion on the eigenvalues computed every ``every`` epochs.

    After each new eigenvalue: once ``ceil(window / 2)`` are known, a local average (the mean
    of the last ``window`` eigenvalues, fewer at the start) is appended; it stands for the
    epoch ``floor(window / 2) * every`` back. When the epoch ``delta`` averages before that is
    at least ``start_epoch``, the search stops if the newest average over that one exceeds
    ``factor``; ``update`` then returns that earlier epoch (the one to roll back to).
    """

    def __init__(self, window: int = 5, delta: int = 4, factor: float = 1.3, start_epoch: int = 10, every: int = 1):  # fmt: skip
        if window < 1 or delta < 1 or every < 1:
            raise ValueError("EarlyStopRule needs window, delta and every >= 1.")
        self.window, self.delta, self.factor = window, delta, factor
        self.start_epoch, self.every = start_epoch, every
        self.values: list[float] = []
        self.local_avg: list[float] = []

    def update(self, epoch: int, value: float) -> int | None:
        """Records the eigenvalue of ``epoch``; returns the stop epoch, or None to go on."""
        self.values.append(float(value))
        if len(self.values) < math.ceil(self.window / 2):
            return None
        recent = self.values[-self.window :]
        self.local_avg.append(sum(recent) / len(recent))
        la_epoch = epoch - self.every * (self.window // 2)
        stop_epoch = la_epoch - self.every * self.delta
        if stop_epoch < self.start_epoch or len(self.local_avg) <= self.delta:
            return None
        previous = self.local_avg[-1 - self.delta]
        if previous > 0 and self.local_avg[-1] / previous > self.factor:
            return stop_epoch
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "local_avg": list(self.local_avg)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = list(state.get("values", []))
        self.local_avg = list(state.get("local_avg", []))


class HessianDiagnostic(L.Callback):
    """Computes λ_max every ``every`` epochs (and at the last); logs ``hessian/eigenvalue``.

    Listed before ``SearchReport``, which puts ``history_fields()`` into the epoch's line of
    ``search_history.jsonl``. With ``early_stop`` (an ``EarlyStopRule``), a stop restores α
    (and β) of the stop epoch, so alphas.json and genotype.json hold that epoch's architecture
    (the supernet's weights stay those of the current epoch), and ends the fit.
    """

    def __init__(
        self,
        every: int,
        iters: int = 20,
        tol: float = 1e-4,
        batches: int = 1,
        early_stop: EarlyStopRule | None = None,
        seed: int = 0,
    ):
        if every < 1 or batches < 1:
            raise ValueError("HessianDiagnostic needs every >= 1 and batches >= 1.")
        self.every, self.iters, self.tol, self.n_batches = every, iters, tol, batches
        self.rule, self.seed = early_stop, seed
        self.latest: dict[str, float] = {}
        self.last_value: float | None = None
        self.stopped: dict[str, Any] | None = None
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self._batches: list[Batch] | None = None

    def fixed_batches(self, trainer: L.Trainer, pl_module) -> list[Batch]:
        """The first ``batches`` validation batches, taken once: every epoch's eigenvalue is
        of the same loss. Under DDP, this rank's shard of each (``distributed.rank_shard``)."""
        if self._batches is None:
            data = trainer.datamodule
            out = []
            for x, y in data.val_dataloader():
                x, y = data.transform((x.to(pl_module.device), y.to(pl_module.device)), False)
                x, y = distributed.rank_shard((x, y))
                if getattr(data, "channels_last", False) and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                out.append((x, y))
                if len(out) >= self.n_batches:
                    break
            self._batches = out
        return self._batches

    def due(self, epoch: int, max_epochs: int) -> bool:
        return epoch % self.every == 0 or epoch == max_epochs - 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        epoch, max_epochs = trainer.current_epoch, trainer.max_epochs or 1
        self.latest = {}
        if not self.due(epoch, max_epochs):
            return
        value = module_eigenvalue(
            pl_module, self.fixed_batches(trainer, pl_module), self.iters, self.tol,
            self.seed + epoch,
        )  # fmt: skip
        # Identical on all ranks already (reduced products); rank 0's value makes the rule's
        # state, and so the stop decision and the rollback, identical by construction.
        value = distributed.broadcast_float(value)
        self.latest = {METRIC: value}
        self.last_value = value
        pl_module.log(METRIC, value, on_step=False, on_epoch=True, sync_dist=False)
        if self.rule is None or self.stopped is not None:
            return
        self.snapshots[epoch] = {k: v.detach().clone() for k, v in pl_module.arch.as_dict().items()}
        stop_epoch = self.rule.update(epoch, value)
        if stop_epoch is None or epoch == max_epochs - 1:
            return
        restored = self.snapshots.get(stop_epoch)
        if restored is not None:
            pl_module.arch.load_values(restored)
        self.stopped = {
            "epoch": epoch,
            "rollback_epoch": stop_epoch,
            "alpha_restored": restored is not None,
            "local_avg_ratio": self.rule.local_avg[-1] / self.rule.local_avg[-1 - self.rule.delta],
        }
        trainer.should_stop = True  # on every rank in the same epoch: the decision is shared

    def history_fields(self) -> dict[str, float]:
        """This epoch's values for the history line (empty on epochs without a computation)."""
        return dict(self.latest)

    def summary_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hessian_eigenvalue": self.last_value}
        if self.rule is not None:
            out["hessian_early_stop"] = self.stopped
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_value": self.last_value,
            "stopped": self.stopped,
            "snapshots": {e: {k: v.cpu() for k, v in s.items()} for e, s in self.snapshots.items()},
            "rule": None if self.rule is None else self.rule.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_value = state.get("last_value")
        self.stopped = state.get("stopped")
        self.snapshots = dict(state.get("snapshots", {}))
        if self.rule is not None and state.get("rule") is not None:
            self.rule.load_state_dict(state["rule"])


@dataclass
class DiagnosticsConfig:
    """The ``diagnostics`` settings: the dominant Hessian eigenvalue of the validation loss
    w.r.t. α (RobustDARTS), logged as ``hessian/eigenvalue``, and DARTS-ES early stopping
    (``nas.run.schema`` registers this dataclass)."""

    hessian_every: int = 0  # compute every N epochs (and at the last); 0 = off
    hessian_iters: int = 20  # power-iteration steps (exact Hessian-vector products)
    hessian_tol: float = 1e-4  # stop iterating when the estimate changes less (relative)
    hessian_batches: int = 1  # fixed validation batches the loss is taken on
    early_stop: bool = False  # DARTS-ES: stop when the local-average eigenvalue grows
    es_window: int = 5  # eigenvalues per local average (RobustDARTS --window)
    es_delta: int = 4  # compare with the local average this many evaluations back (--delta)
    es_factor: float = 1.3  # stop when current / previous local average > factor (--factor)
    es_start_epoch: int = 10  # no stop decided before this epoch (--es_start_epoch)


def hessian_callback(d: DiagnosticsConfig, seed: int, compiled: bool) -> HessianDiagnostic | None:
    """The diagnostic ``d`` asks for, or None (``hessian_every: 0``); ``compiled``: the run
    torch.compiles the supernet (``compile=true``)."""
    if not d.hessian_every:
        return None
    if d.hessian_every < 0:
        raise ValueError(f"diagnostics.hessian_every={d.hessian_every}: use 0 (off) or N >= 1.")
    if compiled:
        raise ValueError(
            "diagnostics.hessian_every needs double backward through the supernet, which a "
            "torch.compile'd graph does not support. Set compile=false, or hessian_every=0."
        )
    rule = None
    if d.early_stop:
        rule = EarlyStopRule(
            d.es_window, d.es_delta, d.es_factor, d.es_start_epoch, d.hessian_every
        )
    return HessianDiagnostic(
        d.hessian_every, d.hessian_iters, d.hessian_tol, d.hessian_batches, rule, seed
    )


def summary_fields(callbacks: Sequence[Any]) -> dict[str, Any]:
    """``hessian_eigenvalue`` (the last computed) for summary.json, when the diagnostic ran."""
    out: dict[str, Any] = {}
    for c in callbacks:
        if isinstance(c, HessianDiagnostic):
            out.update(c.summary_fields())
    return out
