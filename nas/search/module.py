"""The bilevel search: one LightningModule with manual optimization.

Per training step (Liu et al., DARTS, ICLR 2019, Alg. 1): an architecture step on a validation
batch (the strategy's arch-gradient mode fills α's gradient, the α optimizer steps), then a weight
step on a training batch. Batches arrive as ``{"train": (x, y), "val": (x, y)}``. The two halves
are public (``arch_step``, ``weight_step``): ``training_step`` and the benchmarks
(``experiments/bench/search_step.py``) run the same code. The module satisfies the search state
the strategy's components see (``nas.strategies.protocols.SearchState``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nas.core import distributed
from nas.core.arch import ArchParams
from nas.core.genotype import Genotype
from nas.core.lm_metrics import TokenLoss
from nas.core.lr_schedules import WarmupThenCosine
from nas.search.settings import SearchSettings
from nas.strategies import Strategy
from nas.strategies.samplers.uniform import arch_alphas
from nas.strategies.selection import select
from supernet.cuda_graphs import SupernetGraphs
from supernet.spaces.base import SearchSpace

Batch = tuple[torch.Tensor, torch.Tensor]


class StepResult(NamedTuple):
    """One half of a search step: its loss and logits (detached, not read back to the host)
    and whether the optimizer stepped (False: skipped for a non-finite loss or gradient)."""

    loss: torch.Tensor
    logits: torch.Tensor
    stepped: bool


class SearchModule(L.LightningModule):
    """Supernet weights + α, trained bilevel.

    Args:
        space: the search space (builds the supernet).
        strategy: the method's composition.
        weight_optimizer: partial optimizer for the supernet weights (SGD in DARTS).
        arch_optimizer: partial optimizer for α (Adam in DARTS).
        seed: seeds α's initialisation.
        skip_nonfinite: skip (and count) steps with a non-finite loss or gradient.
        cuda_graph: replay the supernet's passes of the arch and weight steps as CUDA graphs
            (``supernet.cuda_graphs``); static-path strategies only, one GPU.
        token_bytes: language modelling (``data=text``): the UTF-8 bytes of each token id;
            batches are ``x`` [B, T], ``y`` [B * T] with logits [B * T, V], and the validation
            pass reports ``search/val_loss`` (nats per token), ``search/val_bits_per_byte`` and
            ``search/val_perplexity`` over the whole pass (``nas.core.lm_metrics``).
        **settings: the step's hyperparameters, ``nas.search.settings.SearchSettings`` (their
            defaults live there): ``weight_lr_min``, ``grad_clip``, ``alpha_init_std``,
            ``arch_start_epoch``, ``arch_every``, ``label_smoothing``, ``lr_warmup_epochs``,
            ``lr_warmup_peak``.
    """

    def __init__(
        self,
        space: SearchSpace,
        strategy: Strategy,
        weight_optimizer: Callable[..., torch.optim.Optimizer],
        arch_optimizer: Callable[..., torch.optim.Optimizer],
        seed: int = 0,
        skip_nonfinite: bool = False,
        cuda_graph: bool = False,
        token_bytes: torch.Tensor | None = None,
        **settings: Any,
    ):
        super().__init__()
        step = SearchSettings.of(**settings)
        self.automatic_optimization = False
        self.space = space
        self.strategy = strategy
        strategy.setup(space=space, seed=seed)
        self.supernet = space.build_supernet(**strategy.supernet_options())
        strategy.check_supernet(self.supernet)
        gen = torch.Generator().manual_seed(seed)
        self.arch = ArchParams(space, step.alpha_init_std, generator=gen, **strategy.arch_options())
        # Under DDP, α is kept out of the weight reducer (the weight step never touches it);
        # its gradient is averaged across ranks explicitly after each arch step instead.
        self._ddp_params_and_buffers_to_ignore = [
            f"arch.{n}" for n, _ in self.arch.named_parameters()
        ]
        self._weight_optimizer = weight_optimizer
        self._arch_optimizer = arch_optimizer
        # Plain attributes (a staged search or a test may change them between fits).
        self.weight_lr_min = step.weight_lr_min
        self.grad_clip = step.grad_clip
        self.arch_start_epoch = step.arch_start_epoch
        self.arch_every = step.arch_every
        self.label_smoothing = step.label_smoothing
        self.lr_warmup_epochs = step.lr_warmup_epochs
        self.lr_warmup_peak = step.lr_warmup_peak
        self._standalone_optimizer: torch.optim.Optimizer | None = None
        self.skip_nonfinite = skip_nonfinite
        self.skipped_steps = 0  # steps skipped for a non-finite loss or gradient
        self.supernet_graphs = SupernetGraphs(self.supernet) if cuda_graph else None
        self.token_loss = None if token_bytes is None else TokenLoss(token_bytes)

    # ---- the search state the strategy's components see (protocols.SearchState) ----------
    @property
    def weight_optimizer(self) -> torch.optim.Optimizer:
        """The raw weight optimizer (its state drives second-order virtual steps)."""
        if self._trainer is None:  # standalone use (tests, benchmarks): built on first access
            if self._standalone_optimizer is None:
                self._standalone_optimizer = self._weight_optimizer(self.supernet.parameters())
            return self._standalone_optimizer
        return self.optimizers()[0].optimizer

    def loss(
        self,
        batch: Batch,
        alphas: dict[str, torch.Tensor],
        params: dict[str, torch.Tensor] | None = None,
        graphable: bool = False,
        label_smoothing: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the supernet mixed by the sampler's weights from ``alphas``.

        ``params`` replaces the supernet's weights (virtual steps of second-order DARTS).
        ``graphable``: the caller consumes the logits and gradients of this call before it
        calls again, so with ``cuda_graph=true`` the call may be a graph replay.
        """
        x, y = batch
        mixing = self.strategy.mixing(alphas)
        args = (x, mixing.weights, mixing.active, mixing.edge_weights)
        graphs = self.supernet_graphs
        if params is not None:
            logits = functional_call(self.supernet, params, args)
        elif graphable and graphs is not None and graphs.eligible(mixing.active):
            logits = graphs(x, mixing.weights, mixing.edge_weights)
        else:
            logits = self.supernet(*args)
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits

    def arch_objective(self, loss: torch.Tensor) -> torch.Tensor:
        """The α objective from the cross-entropy ``loss`` (``Strategy.arch_objective``: the
        additive regularizers, then the multiplicative hardware penalties)."""
        return self.strategy.arch_objective(loss, self.arch.as_dict(), self.arch.op_masks)

    # ---- Lightning ------------------------------------------------------------------
    def configure_optimizers(self):
        w_opt = self._weight_optimizer(self.supernet.parameters())
        a_opt = self._arch_optimizer(self.arch.parameters())
        epochs = max(1, self.trainer.max_epochs or 1)
        if self.lr_warmup_epochs:
            lr = w_opt.param_groups[0]["lr"]
            factor = WarmupThenCosine(
                lr, epochs, self.lr_warmup_epochs, self.lr_warmup_peak, self.weight_lr_min
            )
            return [w_opt, a_opt], [torch.optim.lr_scheduler.LambdaLR(w_opt, factor)]
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            w_opt, T_max=epochs, eta_min=self.weight_lr_min
        )
        return [w_opt, a_opt], [sched]

    def on_fit_start(self) -> None:
        graphs = self.supernet_graphs
        if graphs is not None and graphs.make_graphed is None and self.device.type != "cuda":
            raise ValueError(
                f"cuda_graph=true captures the supernet as CUDA graphs, but the search runs on "
                f"{self.device}. Set cuda_graph=false, or train on a GPU (trainer.accelerator=gpu)."
            )
        if graphs is not None and self.trainer.world_size > 1:
            raise ValueError(
                f"cuda_graph=true runs on one GPU; this run has {self.trainer.world_size} "
                "processes. Set cuda_graph=false for multi-GPU (DDP) search."
            )

    def on_train_epoch_start(self) -> None:
        self.strategy.on_epoch_start(self.current_epoch, self.trainer.max_epochs or 1, self)

    def on_train_start(self) -> None:
        # Lightning skips on_train_epoch_start when it resumes mid-epoch (a max_steps or SIGTERM
        # checkpoint), which would leave the strategy's per-epoch schedules (Gumbel τ, β-decay,
        # perturbation ε, ...) at their initial values for the rest of that epoch. Each hook is
        # a function of the epoch (or records what it did), so calling it here is exact.
        if self.trainer.fit_loop.restarted_mid_epoch:
            self.on_train_epoch_start()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["strategy_state"] = self.strategy.state_dict()
        checkpoint["skipped_steps"] = self.skipped_steps

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.strategy.load_state_dict(checkpoint.get("strategy_state", {}))
        self.strategy.restore(self)  # e.g. DrNAS' second-stage K, before the weights load
        self.skipped_steps = checkpoint.get("skipped_steps", 0)

    def updates_arch(self) -> bool:
        """Whether this epoch takes α steps: a learned α, past the warm-up of the search
        (``arch_start_epoch``) and of the strategy's current stage (DrNAS)."""
        epoch = self.current_epoch
        return (
            self.strategy.arch_grad is not None
            and epoch >= self.arch_start_epoch
            and self.strategy.updates_arch(epoch)
        )

    def _arch_grads(self) -> list[torch.Tensor]:
        return [a.grad for a in self.arch.parameters() if a.grad is not None]

    def _average_arch_grads(self) -> None:
        """All-reduces α's gradient over DDP ranks, so every rank takes the same α step."""
        distributed.average_gradients(self.arch.parameters())

    # ---- the step ---------------------------------------------------------------------
    def arch_step_due(self, batch_idx: int) -> bool:
        """Whether step ``batch_idx`` of the epoch takes an α step (learned α, past the warm-up,
        every ``arch_every``-th step)."""
        return self.updates_arch() and (batch_idx + 1) % self.arch_every == 0

    def arch_step(self, train: Batch, val: Batch, optimizer: torch.optim.Optimizer) -> StepResult:
        """The first half: the strategy's arch-gradient mode fills α's gradient (averaged over
        DDP ranks), ``optimizer`` (α's) steps and the strategy adjusts α after it (ProxylessNAS'
        rescale). With ``skip_nonfinite`` a non-finite loss or α gradient skips the step (one
        host read)."""
        optimizer.zero_grad(set_to_none=True)
        val_loss, val_logits = self.strategy.arch_grad(self, train, val)
        self._average_arch_grads()
        if self.skip_nonfinite and not _all_finite(val_loss, *self._arch_grads()):
            optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            return StepResult(val_loss, val_logits, False)
        optimizer.step()
        self.strategy.after_arch_step(self.arch.as_dict())  # e.g. ProxylessNAS' rescale
        return StepResult(val_loss, val_logits, True)

    def weight_step(self, train: Batch, optimizer: torch.optim.Optimizer) -> StepResult:
        """The second half: cross-entropy (with ``label_smoothing``) at α as a constant, perturbed
        by the strategy (SDARTS), backward, norm clipping, ``optimizer`` (the weights') steps.
        With ``skip_nonfinite`` a non-finite loss or gradient norm skips the step (one host
        read)."""
        # The weight step sees α as a constant: no α gradient is built here.
        detached = {k: a.detach() for k, a in self.arch.as_dict().items()}
        detached = self.strategy.weight_step_arch(self, detached, train)
        loss, logits = self.loss(
            train, detached, graphable=True, label_smoothing=self.label_smoothing
        )
        optimizer.zero_grad(set_to_none=True)
        self._backward(loss)
        if self.skip_nonfinite:
            # Opt-in: one host read per step. A non-finite gradient norm skips the step.
            max_norm = self.grad_clip or float("inf")
            norm = torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), max_norm)
            if not _all_finite(loss, norm):
                optimizer.zero_grad(set_to_none=True)
                self.skipped_steps += 1
                return StepResult(loss.detach(), logits.detach(), False)
        elif self.grad_clip:
            self._clip_gradients(optimizer)
        optimizer.step()
        return StepResult(loss.detach(), logits.detach(), True)

    def _backward(self, loss: torch.Tensor) -> None:
        """Lightning's backward (its precision plugin) under a Trainer, plain autograd without."""
        if self._trainer is None:
            loss.backward()
        else:
            self.manual_backward(loss)

    def _clip_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Norm clipping of the optimizer's parameters to ``grad_clip``, as Lightning's
        ``clip_gradients`` does (through its precision plugin under a Trainer)."""
        if self._trainer is None:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        else:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm"
            )

    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> None:
        w_opt, a_opt = self.optimizers()
        train, val = batch["train"], batch["val"]
        if self.arch_step_due(batch_idx):
            arch = self.arch_step(train, val, a_opt)
            self._log_metrics("arch", arch.loss, arch.logits, val[1])
        weights = self.weight_step(train, w_opt)
        if weights.stepped:
            self._log_metrics("train", weights.loss, weights.logits, train[1])

    def on_train_epoch_end(self) -> None:
        self.lr_schedulers().step()
        self.log("lr/weights", self.weight_optimizer.param_groups[0]["lr"])

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        # The validation loop over the whole split: the supernet's accuracy under the current α.
        detached = {k: a.detach() for k, a in self.arch.as_dict().items()}
        loss, logits = self.loss(batch, detached)
        n = batch[1].shape[0]
        if self.token_loss is None:
            self.log("search/val_loss", loss, on_epoch=True, prog_bar=False, batch_size=n)
        else:  # the pass's loss, bits per byte and perplexity at its end
            self.token_loss.update(loss, batch[1])
        acc = (logits.argmax(-1) == batch[1]).float().mean()
        self.log("search/val_acc", acc, on_epoch=True, prog_bar=True, batch_size=n)

    def on_validation_epoch_start(self) -> None:
        if self.token_loss is not None:
            self.token_loss.reset()

    def on_validation_epoch_end(self) -> None:
        if self.token_loss is None:
            return
        reduce = None if self._trainer is None else self._sum_over_processes
        metrics = self.token_loss.compute(reduce)
        self.token_loss.reset()
        for name, value in (metrics or {}).items():
            self.log(f"search/val_{name}", value, prog_bar=name == "bits_per_byte", batch_size=1)

    def _sum_over_processes(self, sums: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(sums, reduce_op="sum")

    def _log_metrics(
        self, step: str, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor
    ) -> None:
        """The batch loss and accuracy of one step: ``search/train_*`` (the weight step, on the
        training split) or ``search/arch_*`` (the α step, on the validation split's batch):
        ``<name>_step`` per step (loggers only), ``<name>`` the epoch's mean."""
        acc = (logits.argmax(-1) == y).float().mean()
        n = y.shape[0]
        name = f"search/{step}_loss"
        self.log(f"{name}_step", loss, on_step=True, on_epoch=False, batch_size=n)
        self.log(name, loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self.log(
            f"search/{step}_acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=n
        )

    # ---- results --------------------------------------------------------------------
    def probabilities(self) -> dict[str, torch.Tensor]:
        """The per-edge op distribution the strategy implies (softmax(α) for DARTS)."""
        return self.strategy.probabilities(self.arch.as_dict())

    def genotype(self) -> Genotype:
        rule = self.strategy.selection or self.space.default_selection
        return select(rule, self.probabilities(), self.space)

    def select_architecture(self, batches: list[Batch]) -> dict[str, Any]:
        """Runs the strategy's model-based selector (RSWS, SPOS) on validation batches and
        writes the chosen architecture into α (one-hot), so ``genotype()``, ``alphas.json``
        and ``stage=discretize`` all give it. Returns the selector's report."""
        arch, info = self.strategy.selector(self.supernet, batches)
        self.arch.load_values(arch_alphas(arch, len(self.space.ops)))
        return info


def _all_finite(*tensors: torch.Tensor) -> bool:
    """One host read: are all the given tensors finite?"""
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
