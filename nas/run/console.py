"""What a person watching the terminal sees: a start-up banner and one progress display per
phase (search, retrain).

On a terminal, Lightning's ``RichProgressBar``; otherwise (CI logs, ``nohup``, a cluster's
output file) one plain line per epoch, since a redrawn bar turns into thousands of lines in a
file. Both show the same few metrics (``PHASE_METRICS``), each under the last part of its
logged name (``search/val_acc`` is ``val_acc``): the loss and accuracy of the epoch, the
validation accuracy, and in search the α step's accuracy, the current genotype's skip count,
the mean α entropy and the time left for the phase.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from omegaconf import DictConfig, OmegaConf

from nas.run.devices import channels_last, runs_on_cpu
from nas.run.settings import child_size

# logged key -> name on the bar, per phase (``trainer`` stage argument of builders.trainer):
# the name is the logged key's last part, so a number on the console is found under that
# name in every logger, the CSV and summary.json.
PHASE_METRICS = {
    "search": {
        "search/train_loss": "train_loss",  # the weight step's batches (training split)
        "search/train_acc": "train_acc",
        "search/arch_acc": "arch_acc",  # the α step's batches (validation split)
        "search/val_acc": "val_acc",  # the validation loop over the validation split
        "search/val_bits_per_byte": "val_bits_per_byte",  # language modelling (data=text)
        "genotype/skip_connect": "skip_connect",  # skips in the current genotype
        "genotype/params": "params",  # the current architecture's parameters (module, vit, gpt)
        "alpha_entropy": "alpha_entropy",  # mean entropy of the op distributions
        # With a hardware-cost penalty (ProxylessNAS, FBNet): its expectation under α.
        "cost/expected_latency": "expected_latency",
        "cost/expected_macs": "expected_macs",
        "cost/expected_params": "expected_params",
    },
    "retrain": {
        "retrain/train_loss": "train_loss",
        "retrain/train_acc": "train_acc",
        "retrain/val_acc": "val_acc",
        "retrain/val_bits_per_byte": "val_bits_per_byte",  # language modelling (data=text)
    },
}


# Entropy moves in the 4th decimal during DARTS' first epochs (log 8 = 2.0794 when uniform).
DECIMALS = {
    "skip_connect": 0, "alpha_entropy": 4, "expected_macs": 0, "expected_params": 0, "params": 0,
}  # fmt: skip


def fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class PhaseMetrics:
    """The bar's metrics: ``PHASE_METRICS`` of the phase, renamed, plus the time left."""

    phase: str
    _start: float | None = None

    def phase_metrics(self, trainer: L.Trainer) -> dict[str, Any]:
        names = PHASE_METRICS.get(self.phase, {})
        out: dict[str, Any] = {}
        for key, short in names.items():
            value = trainer.callback_metrics.get(key)
            if value is not None and value.numel() == 1:
                value = float(value)
                out[short] = f"{value:.{DECIMALS.get(short, 3)}f}"
        left = self.time_left(trainer)
        if left is not None:
            out["left"] = fmt_duration(left)
        return out

    def time_left(self, trainer: L.Trainer) -> float | None:
        """Seconds left in the phase, from the mean time per epoch so far."""
        if self._start is None:
            return None
        epochs = trainer.max_epochs or 1
        done = trainer.current_epoch - getattr(self, "_first_epoch", 0)
        batches = trainer.num_training_batches or 1
        fraction = done + trainer.fit_loop.epoch_loop.batch_progress.current.completed / batches
        if fraction <= 0:
            return None
        elapsed = time.perf_counter() - self._start
        remaining = (epochs - trainer.current_epoch) - (
            trainer.fit_loop.epoch_loop.batch_progress.current.completed / batches
        )
        return elapsed / fraction * max(0.0, remaining)

    def start_clock(self, trainer: L.Trainer) -> None:
        self._start = time.perf_counter()
        self._first_epoch = trainer.current_epoch  # resumed runs count from where they start


class RichPhaseBar(PhaseMetrics, RichProgressBar):
    """Lightning's rich bar showing the phase's metrics under short names."""

    def __init__(self, phase: str, refresh_rate: int = 1):
        super().__init__(refresh_rate=refresh_rate, leave=False)
        self.phase = phase

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self.start_clock(trainer)

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        return self.phase_metrics(trainer)


class EpochLines(PhaseMetrics, ProgressBar):
    """The plain fallback: one line per epoch (``[search] epoch 3/8  train_loss 0.512 ...``)."""

    def __init__(self, phase: str):
        super().__init__()
        self.phase = phase
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_clock(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        metrics = self.phase_metrics(trainer)
        left = metrics.pop("left", None)
        # The epoch's end: nothing of it is left, whatever the batch counter says.
        left = fmt_duration(self._left_after_epoch(trainer)) if left is not None else None
        parts = [f"{k} {v}" for k, v in metrics.items()]
        if left is not None:
            parts.append(f"left {left}")
        epochs = trainer.max_epochs or 1
        print(
            f"[{self.phase}] epoch {trainer.current_epoch + 1}/{epochs}  " + "  ".join(parts),
            flush=True,
        )

    def _left_after_epoch(self, trainer) -> float:
        done = trainer.current_epoch + 1 - self._first_epoch
        elapsed = time.perf_counter() - (self._start or time.perf_counter())
        return (
            elapsed / max(1, done) * max(0, (trainer.max_epochs or 1) - trainer.current_epoch - 1)
        )


def progress_bar(phase: str, refresh_rate: int) -> ProgressBar:
    """Rich on a terminal (when ``rich`` is installed), plain lines otherwise."""
    if sys.stdout.isatty():
        try:
            import rich  # noqa: F401

            return RichPhaseBar(phase, refresh_rate=refresh_rate)
        except ImportError:
            pass
    return EpochLines(phase)


# Warnings about Lightning's own code that a user can do nothing about, printed once per
# stage otherwise: (message regex, why it is harmless).
QUIET_WARNINGS = (
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        "lightning/pytorch/utilities/_pytree.py calls torch's deprecated LeafSpec check",
    ),
)


def quiet_lightning() -> None:
    """Lightning's start-up chatter (tips, 'GPU available', 'limit_val_batches=1 was
    configured') is what the banner states once; its deprecation notes about its own code
    (``QUIET_WARNINGS``) are silenced; other warnings still show."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message, _why in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def device_text(cfg: DictConfig) -> str:
    import torch

    if runs_on_cpu(cfg):
        from nas.run.threads import describe

        return f"cpu, threads {describe()}"
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"cuda: {torch.cuda.get_device_name(0)}" + (f" (x{n} visible)" if n > 1 else "")
    return str(cfg.trainer.accelerator)


def banner(cfg: DictConfig, run_dir) -> str:
    """The composed choices of a run, one per line."""
    ss, r, t = cfg.search_space, cfg.retrain, cfg.trainer
    from supernet.spaces import space_class

    stage = cfg.stage.value
    lines = [f"oneshot-nas  stage={stage}  seed={cfg.seed}"]
    cls = space_class(ss.name)
    rows = [("space", cls.banner(OmegaConf.to_container(ss, resolve=True)))]
    if stage in ("pipeline", "search", "discretize"):
        rows.append(("strategy", f"{cfg.strategy.name}: {cfg.strategy.paper or '-'}"))
    rows.append(
        (
            "data",
            f"{cfg.data.name} {'x'.join(map(str, cfg.data.input_shape))}, {cfg.data.num_classes} classes",
        )
    )
    if stage in ("pipeline", "search"):
        rows.append(("search", f"{t.max_epochs} epochs, batch {cfg.strategy.batch_size}"))
    if stage == "estimate":
        e = cfg.estimate
        archs = f"file {e.archs}" if e.archs else f"sample={e.sample}"
        rows.append(
            (
                "estimate",
                f"{', '.join(e.proxies)} on {archs}, {e.batches} batch(es) of {e.batch_size}",
            )
        )
    if stage == "estimate":
        rows.append(
            ("child", f"{r.name}: {cls.child_banner(r.network, *child_size(cfg))}, untrained")
        )
    if stage in ("pipeline", "retrain", "profile"):
        child = cls.child_banner(r.network, *child_size(cfg))
        rows.append(("retrain", f"{r.name}: {child}, {r.epochs} epochs, batch {r.batch_size}"))
    if stage in ("pipeline", "search", "retrain"):
        rows.append(("device", device_text(cfg)))
        rows.append(
            (
                "precision",
                f"{t.precision}, channels_last={channels_last(cfg)}, compile={cfg.compile}",
            )
        )
        logger = cfg.logger.name + (f" ({cfg.logger.mode})" if cfg.logger.name == "wandb" else "")
        rows.append(("logger", logger))
    rows.append(("run dir", str(run_dir)))
    lines += [f"  {k:<10}{v}" for k, v in rows]
    return "\n".join(lines)
