"""Search-space registry: ``search_space.name`` → space class."""

from __future__ import annotations

from collections.abc import Sequence

from supernet.spaces.base import SearchSpace
from supernet.spaces.darts import DartsSpace
from supernet.spaces.mbconv import MBConvSpace
from supernet.spaces.nb201 import NB201Space

SPACES: dict[str, type[SearchSpace]] = {
    "darts": DartsSpace,
    "nb201": NB201Space,
    "mbconv": MBConvSpace,
}


def build_space(name: str, input_shape: Sequence[int], num_classes: int, **options) -> SearchSpace:
    """Builds the space ``name`` for the data's input shape and class count."""
    if name not in SPACES:
        raise ValueError(
            f"Unknown search space {name!r}. Valid choices are: {', '.join(sorted(SPACES))}."
        )
    return SPACES[name](input_shape=input_shape, num_classes=num_classes, **options)
