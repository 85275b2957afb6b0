"""Temperature schedules of the Gumbel-softmax samplers (per epoch)."""

from __future__ import annotations


def temperature(kind: str, start: float, end: float, epoch: int, max_epochs: int) -> float:
    """τ at ``epoch`` (0-based) of ``max_epochs``: ``start`` at the first epoch, ``end`` at the last.

    ``linear``: τ = start − (start − end)·e/(E−1) (GDAS, Dong & Yang, CVPR 2019: 10 → 0.1).
    ``exponential``: τ = start·(end/start)^(e/(E−1)), a constant decay factor per epoch (SNAS,
    Xie et al., ICLR 2019, anneals τ exponentially from λ0 = 1). ``constant``: τ = start.
    """
    if kind not in ("linear", "exponential", "constant"):
        raise ValueError(
            f"Unknown temperature schedule {kind!r}; valid: linear, exponential, constant."
        )
    if start <= 0 or end <= 0:
        raise ValueError(f"Temperatures must be positive, got start={start}, end={end}.")
    if kind == "constant" or max_epochs <= 1:
        return float(start)
    t = min(max(epoch, 0), max_epochs - 1) / (max_epochs - 1)
    if kind == "linear":
        return float(start - (start - end) * t)
    return float(start * (end / start) ** t)


class TemperatureMixin:
    """A τ attribute that follows ``temperature(schedule, tau_max, tau_min, ...)`` per epoch."""

    schedule: str
    tau_max: float
    tau_min: float
    tau: float

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        self.tau = temperature(self.schedule, self.tau_max, self.tau_min, epoch, max_epochs)
