"""Search strategies as compositions: sampler + arch-gradient mode + selection rule (+ more).

See DESIGN.md: a method is a composition configured in ``conf/strategy/<method>.yaml``, not a
fork of the search loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nas.strategies.samplers import Mixing, Sampler, SoftmaxSampler

__all__ = ["Mixing", "Sampler", "SoftmaxSampler", "Strategy"]


@dataclass
class Strategy:
    """A built strategy.

    Attributes:
        name: the strategy's name (as in ``strategy=<name>``).
        sampler: α → mixing weights.
        arch_grad: computes the α gradient of the validation loss.
        selection: selection rule name, or None for the space's default.
        regularizers: callables ``(alphas) -> loss`` added to the arch objective.
    """

    name: str
    sampler: Sampler
    arch_grad: Any
    selection: str | None = None
    regularizers: list[Any] = field(default_factory=list)
