"""Training a genotype's child network from scratch (DARTS' CIFAR evaluation recipe).

Liu et al., ICLR 2019, sec. 3.3: SGD with cosine schedule, an auxiliary head weighted 0.4,
drop path ramped linearly from 0 over the epochs, cutout (in the data pipeline) and gradient
clipping at norm 5. Label smoothing is available for the ImageNet recipe.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from nas.core.lm_metrics import TokenLoss

Batch = tuple[torch.Tensor, torch.Tensor]


class RetrainModule(L.LightningModule):
    """Trains a child network returning ``(logits, aux_logits | None)``.

    Args:
        model: the child network.
        optimizer: partial optimizer (SGD in DARTS).
        scheduler: ``cosine`` (to ``lr_min`` over the epochs) or ``exponential`` (× ``gamma`` per epoch).
        auxiliary_weight: weight of the auxiliary head's loss.
        drop_path: final drop-path probability (ramped linearly with epochs).
        grad_clip: max gradient norm (0 = none).
        label_smoothing: cross-entropy label smoothing.
        dropout: dropout on the input of the network's ``classifier`` in training
            (ProxylessNAS' mobile model: ``--dropout 0.1``); 0 = none.
        no_decay_bn: BatchNorm weights and biases in a parameter group without weight decay
            (ProxylessNAS ``--no_decay_keys bn``).
        token_bytes: Language modelling (``data=text``): the UTF-8 bytes of each token id.
            Batches are then ``x`` [B, T] and ``y`` [B * T] with logits [B * T, V], and
            validation and test report ``loss`` (nats per token), ``bits_per_byte`` and
            ``perplexity`` over the whole pass (``nas.core.lm_metrics``); None: classification.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: str = "cosine",
        lr_min: float = 0.0,
        gamma: float = 0.97,
        auxiliary_weight: float = 0.4,
        drop_path: float = 0.2,
        grad_clip: float = 5.0,
        label_smoothing: float = 0.0,
        skip_nonfinite: bool = False,
        dropout: float = 0.0,
        no_decay_bn: bool = False,
        token_bytes: torch.Tensor | None = None,
    ):
        super().__init__()
        if scheduler not in ("cosine", "exponential"):
            raise ValueError(
                f"Unknown retrain scheduler {scheduler!r}; valid: cosine, exponential."
            )
        self.model = model
        self._optimizer = optimizer
        self.scheduler = scheduler
        self.lr_min, self.gamma = lr_min, gamma
        self.auxiliary_weight = auxiliary_weight
        self.drop_path = drop_path
        self.grad_clip = grad_clip
        self.label_smoothing = label_smoothing
        self.skip_nonfinite = skip_nonfinite
        self.skipped_steps = 0
        self.no_decay_bn = no_decay_bn
        if dropout:
            classifier_dropout(model, dropout)
        self.token_loss = (
            None if token_bytes is None else {s: TokenLoss(token_bytes) for s in ("val", "test")}
        )

    def configure_optimizers(self):
        params = self.model.parameters()
        if self.no_decay_bn:
            params = decay_groups(self.model)
        opt = self._optimizer(params)
        if self.scheduler == "cosine":
            epochs = max(1, self.trainer.max_epochs or 1)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=epochs, eta_min=self.lr_min
            )
        else:
            sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=self.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        if self.grad_clip:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm"
            )

    def on_train_epoch_start(self) -> None:
        # DARTS: drop_path_prob = drop_path * epoch / epochs.
        epochs = max(1, self.trainer.max_epochs or 1)
        prob = self.drop_path * self.current_epoch / epochs
        self.model.drop_path_prob = prob
        self.log("retrain/drop_path", prob)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits, aux = self.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        if aux is not None and self.auxiliary_weight:
            loss = loss + self.auxiliary_weight * F.cross_entropy(
                aux, y, label_smoothing=self.label_smoothing
            )
        if self.skip_nonfinite and not torch.isfinite(loss):  # opt-in: one host read per step
            self.skipped_steps += 1
            return None  # Lightning skips the optimizer step
        acc = (logits.detach().argmax(-1) == y).float().mean()
        n = y.shape[0]
        # <name>_step per step (loggers only), <name> the epoch's mean (console, summary).
        self.log(
            "retrain/train_loss_step", loss.detach(), on_step=True, on_epoch=False, batch_size=n
        )
        self.log("retrain/train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=n)
        self.log("retrain/train_acc", acc, on_step=False, on_epoch=True, batch_size=n)
        self.log(
            "lr/retrain",
            self.optimizers().param_groups[0]["lr"],
            on_step=False,
            on_epoch=True,
            batch_size=n,
        )
        return loss

    def _evaluate(self, batch: Batch, split: str) -> None:
        x, y = batch
        logits, _ = self.model(x)
        n = y.shape[0]
        loss = F.cross_entropy(logits, y)
        if self.token_loss is None:
            self.log(f"retrain/{split}_loss", loss, on_epoch=True, batch_size=n)
        else:  # the pass's loss, bits per byte and perplexity at its end
            self.token_loss[split].update(loss, y)
        acc = (logits.argmax(-1) == y).float().mean()
        self.log(f"retrain/{split}_acc", acc, on_epoch=True, prog_bar=True, batch_size=n)

    def _log_token_metrics(self, split: str) -> None:
        if self.token_loss is None:
            return
        reduce = None if self._trainer is None else self._sum_over_processes
        metrics = self.token_loss[split].compute(reduce)
        self.token_loss[split].reset()
        for name, value in (metrics or {}).items():
            self.log(
                f"retrain/{split}_{name}", value, prog_bar=name == "bits_per_byte", batch_size=1
            )

    def _sum_over_processes(self, sums: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(sums, reduce_op="sum")

    def on_validation_epoch_start(self) -> None:
        if self.token_loss is not None:
            self.token_loss["val"].reset()

    def on_test_epoch_start(self) -> None:
        if self.token_loss is not None:
            self.token_loss["test"].reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_token_metrics("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_token_metrics("test")


def classifier_dropout(model: nn.Module, p: float) -> None:
    """Dropout with probability ``p`` on what ``model.classifier`` receives, in training mode
    only (a forward pre-hook: every child network names its final linear layer
    ``classifier``; evaluation and the exported network are unchanged)."""
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Linear):
        raise ValueError(
            f"retrain.dropout={p} drops the input of the network's final `classifier` layer, "
            f"but {type(model).__name__} has none. Set retrain.dropout=0."
        )
    if not 0 <= p < 1:
        raise ValueError(f"retrain.dropout={p} must be in [0, 1).")

    def drop(module: nn.Module, inputs: tuple[torch.Tensor, ...]):
        return (F.dropout(inputs[0], p, training=module.training),)

    classifier.register_forward_pre_hook(drop)


def decay_groups(model: nn.Module) -> list[dict]:
    """Two parameter groups: everything else, and the BatchNorm parameters with
    ``weight_decay=0`` (the optimizer's own weight decay applies to the first)."""
    bn = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for p in m.parameters(recurse=False)
    }
    params = list(model.parameters())
    return [
        {"params": [p for p in params if id(p) not in bn]},
        {"params": [p for p in params if id(p) in bn], "weight_decay": 0.0},
    ]
