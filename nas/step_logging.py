"""Per-step metric logging that keeps the step free of host synchronisation.

Lightning turns every value logged with ``on_step=True, prog_bar=True`` into a Python number
after every batch (``.item()``: a device sync on a GPU), whatever the bar's refresh rate. So
per-step values go to the loggers only (read every ``log_every_n_steps``), and the progress bar
shows epoch means, which are accumulated on the device and read once per epoch.
"""

from __future__ import annotations

import lightning as L
import torch


def log_step_and_epoch(
    module: L.LightningModule, name: str, value: torch.Tensor, batch_size: int, bar: bool = True
) -> None:
    """Logs ``<name>_step`` (loggers) and ``<name>_epoch`` (the epoch mean; on the bar)."""
    module.log(f"{name}_step", value, on_step=True, on_epoch=False, batch_size=batch_size)
    module.log(
        f"{name}_epoch", value, on_step=False, on_epoch=True, prog_bar=bar, batch_size=batch_size
    )
