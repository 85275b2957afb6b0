"""Context windows of a token stream, gathered a whole batch at a time (the token counterpart
of ``modules.IndexBatchDataset``).

A split's windows are strided: they start at ``0, T, 2T, ...`` (``T`` = the context, the
``data.input_shape``), each the ``T + 1`` tokens ``x = s[i : i + T]``, ``y = s[i + 1 : i + T +
1]``, the last start the largest that keeps ``y`` inside the split. So windows never overlap in
their inputs and never cross a split's ends; the final ``< T + 1`` tokens of a split are
unused. Training shuffles the windows with the run's seeded sampler (every epoch another
order, the same for every run of a seed); evaluation reads them in order, so a split's loss is
the mean over exactly its windows' targets.

A batch is ``x`` int64 [B, T] and ``y`` int64 [B * T] (flattened: the collation of the
language-modelling contract), so a model's logits [B * T, V] meet the classification code's
cross-entropy and argmax accuracy (next-token accuracy) unchanged.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


def strided_starts(length: int, context: int) -> torch.Tensor:
    """Window starts ``0, T, 2T, ...`` with ``start + T + 1 <= length`` (int64)."""
    return torch.arange(0, max(0, length - context), context, dtype=torch.long)


class TokenWindows(Dataset):
    """The windows of one split of a token stream.

    Args:
        stream: int64 token ids [N] of the split.
        starts: int64 window starts [W] into ``stream``.
        context: ``T``, the tokens of one input.
    """

    def __init__(self, stream: torch.Tensor, starts: torch.Tensor, context: int) -> None:
        if stream.dtype != torch.int64 or stream.dim() != 1:
            raise ValueError(f"stream must be int64 [N], got {stream.dtype} {tuple(stream.shape)}")
        if starts.numel() and int(starts.max()) + context + 1 > stream.numel():
            raise ValueError(f"a window of {context + 1} tokens ends past the {stream.numel()}")
        self.stream, self.starts, self.context = stream, starts, int(context)
        self._offsets = torch.arange(self.context + 1, device=stream.device)

    @classmethod
    def strided(cls, stream: torch.Tensor, context: int) -> TokenWindows:
        """Every strided window of ``stream`` (module docstring)."""
        return cls(stream, strided_starts(stream.numel(), context), context)

    def __len__(self) -> int:
        return int(self.starts.numel())

    @property
    def device(self) -> torch.device:
        return self.stream.device

    @property
    def nbytes(self) -> int:
        return (self.stream.numel() + self.starts.numel()) * 8

    @property
    def targets(self) -> int:
        """Target tokens of all the windows (``len * T``)."""
        return len(self) * self.context

    def take(self, index: torch.Tensor) -> TokenWindows:
        """The windows at ``index`` (the stream is shared)."""
        return TokenWindows(self.stream, self.starts[index], self.context)

    def to(self, device: torch.device) -> TokenWindows:
        """Moves the tensors to ``device`` in place (the device pipeline's cache)."""
        self.stream, self.starts = self.stream.to(device), self.starts.to(device)
        self._offsets = self._offsets.to(device)
        return self

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x [B, T], y [B * T])`` of the windows at ``index``."""
        tokens = self.stream[self.starts[index.to(self.device)][:, None] + self._offsets]
        return tokens[:, :-1].contiguous(), tokens[:, 1:].reshape(-1)

    def __getitem__(self, items: list) -> tuple:
        """A batch for a list of indices, or ``(x, y, tag)`` for tagged sampler items
        ``(index, seed, pass, position)``, like ``IndexBatchDataset``."""
        tagged = bool(items) and isinstance(items[0], tuple)
        indices = [item[0] for item in items] if tagged else items
        x, y = self.batch(torch.as_tensor(indices, dtype=torch.long))
        return (x, y, (items[0][2], items[0][3])) if tagged else (x, y)
