"""Partial channel connections (Xu et al., "PC-DARTS: Partial Channel Connections for
Memory-Efficient Architecture Search", ICLR 2020, sec. 3.2).

Only 1/K of each edge's channels pass through the candidate ops; the rest bypass them and the
two parts are channel-shuffled (K = 4 on CIFAR). Implemented in ``supernet.mixed``; this
component asks the space for it.
"""

from __future__ import annotations

from nas.strategies.protocols import Modifier


class PartialChannels(Modifier):
    """Builds the supernet with ``partial_channels=k``."""

    def __init__(self, k: int = 4):
        if k < 1:
            raise ValueError(f"Partial-channel K must be >= 1, got {k}.")
        self.k = k

    def supernet_options(self) -> dict[str, int]:
        return {"partial_channels": self.k}
