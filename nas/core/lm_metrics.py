"""Language-modelling metrics of an evaluation pass: loss, bits per byte, perplexity.

A pass adds up, over its batches, the cross-entropy in nats of every target token, the number
of target tokens and their UTF-8 bytes (``token_bytes[y]``: 1 per byte token, a BPE token's own
length), so the epoch's values are exact over the pass, whatever the batch sizes:

- ``loss`` = nats / tokens (the mean cross-entropy per token),
- ``bits_per_byte`` = nats / (ln 2 · bytes) (for byte tokens: loss / ln 2),
- ``perplexity`` = exp(loss).

The sums stay on the device (no host read per step) and are reduced across processes once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

NAMES = ("loss", "bits_per_byte", "perplexity")


def lm_metrics(nats: torch.Tensor, tokens: torch.Tensor, nbytes: torch.Tensor) -> dict:
    """The three metrics of summed ``nats``, target ``tokens`` and their ``nbytes``."""
    loss = nats / tokens
    return {"loss": loss, "bits_per_byte": nats / (math.log(2) * nbytes), "perplexity": loss.exp()}


class TokenLoss:
    """The sums of one evaluation pass (module docstring).

    Args:
        token_bytes: int64 [vocab]: UTF-8 bytes of each token id.
    """

    def __init__(self, token_bytes: torch.Tensor) -> None:
        self.token_bytes = token_bytes.long()
        self.sums: torch.Tensor | None = None

    def reset(self) -> None:
        self.sums = None

    def update(self, mean_loss: torch.Tensor, y: torch.Tensor) -> None:
        """Adds a batch: its mean cross-entropy over the targets ``y`` [N] (flattened)."""
        if self.token_bytes.device != y.device:
            self.token_bytes = self.token_bytes.to(y.device)
        dtype = torch.float32 if y.device.type == "mps" else torch.float64
        n = y.numel()
        batch = torch.stack(
            [
                mean_loss.detach().to(dtype) * n,
                torch.tensor(n, dtype=dtype, device=y.device),
                self.token_bytes[y].sum().to(dtype),
            ]
        )
        self.sums = batch if self.sums is None else self.sums + batch

    def compute(
        self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor] | None:
        """The metrics of the pass (None before any batch); ``reduce`` sums across processes."""
        if self.sums is None:
            return None
        sums = self.sums if reduce is None else reduce(self.sums)
        return {k: v.float() for k, v in lm_metrics(sums[0], sums[1], sums[2]).items()}
