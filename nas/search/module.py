"""The bilevel search: one LightningModule with manual optimization.

Per training step (Liu et al., DARTS, ICLR 2019, Alg. 1): an architecture step on a validation
batch (the strategy's arch-gradient mode fills α's gradient, the α optimizer steps), then a weight
step on a training batch. Batches arrive as ``{"train": (x, y), "val": (x, y)}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nas.core import distributed
from nas.core.arch import ArchParams
from nas.core.genotype import Genotype
from nas.core.lr_schedules import WarmupThenCosine
from nas.strategies import Strategy
from nas.strategies.samplers.uniform import arch_alphas
from nas.strategies.selection import select
from supernet.cuda_graphs import SupernetGraphs
from supernet.spaces.base import SearchSpace

Batch = tuple[torch.Tensor, torch.Tensor]


class SearchModule(L.LightningModule):
    """Supernet weights + α, trained bilevel.

    Args:
        space: the search space (builds the supernet).
        strategy: the method's composition.
        weight_optimizer: partial optimizer for the supernet weights (SGD in DARTS).
        arch_optimizer: partial optimizer for α (Adam in DARTS).
        weight_lr_min: final learning rate of the cosine schedule over ``max_epochs``.
        grad_clip: max gradient norm of the weight step.
        alpha_init_std: α is initialised as ``alpha_init_std * randn``.
        arch_start_epoch: epochs of weight-only warm-up before α is updated.
        arch_every: one α step every this many weight steps (ProxylessNAS: 5), on the steps
            whose index within the epoch + 1 is a multiple of it.
        label_smoothing: of the weight step's cross-entropy (ProxylessNAS: 0.1); the α step's
            loss stays plain cross-entropy.
        lr_warmup_epochs, lr_warmup_peak: a weight lr warm-up cosine of its own from the peak
            over the first epochs, then the cosine restarts from the optimizer's lr
            (ProxylessNAS; ``nas/core/lr_schedules.py``); 0 = one cosine over the search.
        seed: seeds α's initialisation.
        skip_nonfinite: skip (and count) steps with a non-finite loss or gradient.
        cuda_graph: replay the supernet's passes of the arch and weight steps as CUDA graphs
            (``supernet.cuda_graphs``); static-path strategies only, one GPU.
    """

    def __init__(
        self,
        space: SearchSpace,
        strategy: Strategy,
        weight_optimizer: Callable[..., torch.optim.Optimizer],
        arch_optimizer: Callable[..., torch.optim.Optimizer],
        weight_lr_min: float = 0.001,
        grad_clip: float = 5.0,
        alpha_init_std: float = 1e-3,
        arch_start_epoch: int = 0,
        arch_every: int = 1,
        label_smoothing: float = 0.0,
        lr_warmup_epochs: int = 0,
        lr_warmup_peak: float = 0.05,
        seed: int = 0,
        skip_nonfinite: bool = False,
        cuda_graph: bool = False,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.space = space
        self.strategy = strategy
        strategy.setup(space=space, seed=seed)
        self.supernet = space.build_supernet(**strategy.supernet_options())
        strategy.check_supernet(self.supernet)
        gen = torch.Generator().manual_seed(seed)
        self.arch = ArchParams(space, alpha_init_std, generator=gen, **strategy.arch_options())
        # Under DDP, α is kept out of the weight reducer (the weight step never touches it);
        # its gradient is averaged across ranks explicitly after each arch step instead.
        self._ddp_params_and_buffers_to_ignore = [
            f"arch.{n}" for n, _ in self.arch.named_parameters()
        ]
        self._weight_optimizer = weight_optimizer
        self._arch_optimizer = arch_optimizer
        self.weight_lr_min = weight_lr_min
        self.grad_clip = grad_clip
        self.arch_start_epoch = arch_start_epoch
        if arch_every < 1:
            raise ValueError(
                f"strategy.arch_every={arch_every}: one α step every N weight steps needs N >= 1."
            )
        self.arch_every = arch_every
        self.label_smoothing = label_smoothing
        self.lr_warmup_epochs, self.lr_warmup_peak = lr_warmup_epochs, lr_warmup_peak
        self._standalone_optimizer: torch.optim.Optimizer | None = None
        self.skip_nonfinite = skip_nonfinite
        self.skipped_steps = 0  # steps skipped for a non-finite loss or gradient
        self.supernet_graphs = SupernetGraphs(self.supernet) if cuda_graph else None

    # ---- pieces the arch-gradient modes call -------------------------------------------
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

    def arch_regularization(self) -> torch.Tensor | float:
        """The additive regularizers' sum (those without ``combine``)."""
        alphas = self.arch.as_dict()
        regs = [r for r in self.strategy.regularizers if not hasattr(r, "combine")]
        return sum((reg(alphas) for reg in regs), 0.0)

    def arch_objective(self, loss: torch.Tensor) -> torch.Tensor:
        """The α objective from the cross-entropy ``loss``: ``loss`` plus the additive
        regularizers, then each regularizer with ``combine(loss, arch, masks)`` applied in
        turn (the multiplicative hardware penalties of ProxylessNAS and FBNet scale the loss)."""
        loss = loss + self.arch_regularization()
        combined = [r for r in self.strategy.regularizers if hasattr(r, "combine")]
        if combined:
            alphas = self.arch.as_dict()
            for reg in combined:
                loss = reg.combine(loss, alphas, self.arch.op_masks)
        return loss

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

    def training_step(self, batch: dict[str, Batch], batch_idx: int) -> None:
        w_opt, a_opt = self.optimizers()
        train, val = batch["train"], batch["val"]

        if self.updates_arch() and (batch_idx + 1) % self.arch_every == 0:
            a_opt.zero_grad(set_to_none=True)
            val_loss, val_logits = self.strategy.arch_grad(self, train, val)
            self._average_arch_grads()
            if self.skip_nonfinite and not _all_finite(val_loss, *self._arch_grads()):
                a_opt.zero_grad(set_to_none=True)
                self.skipped_steps += 1
            else:
                a_opt.step()
                self.strategy.after_arch_step(self.arch.as_dict())  # e.g. ProxylessNAS' rescale
            self._log_metrics("arch", val_loss, val_logits, val[1])

        # The weight step sees α as a constant: no α gradient is built here.
        detached = {k: a.detach() for k, a in self.arch.as_dict().items()}
        detached = self.strategy.weight_step_arch(self, detached, train)
        loss, logits = self.loss(
            train, detached, graphable=True, label_smoothing=self.label_smoothing
        )
        w_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.skip_nonfinite:
            # Opt-in: one host read per step. A non-finite gradient norm skips the step.
            max_norm = self.grad_clip or float("inf")
            norm = torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), max_norm)
            if not _all_finite(loss, norm):
                w_opt.zero_grad(set_to_none=True)
                self.skipped_steps += 1
                return
        elif self.grad_clip:
            self.clip_gradients(
                w_opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm"
            )
        w_opt.step()
        self._log_metrics("train", loss.detach(), logits.detach(), train[1])

    def on_train_epoch_end(self) -> None:
        self.lr_schedulers().step()
        self.log("lr/weights", self.weight_optimizer.param_groups[0]["lr"])

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        # The validation loop over the whole split: the supernet's accuracy under the current α.
        detached = {k: a.detach() for k, a in self.arch.as_dict().items()}
        loss, logits = self.loss(batch, detached)
        n = batch[1].shape[0]
        self.log("search/val_loss", loss, on_epoch=True, prog_bar=False, batch_size=n)
        acc = (logits.argmax(-1) == batch[1]).float().mean()
        self.log("search/val_acc", acc, on_epoch=True, prog_bar=True, batch_size=n)

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
