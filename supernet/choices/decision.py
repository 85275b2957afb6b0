"""A decision: one α row of a model's search space, shared by every place with its label.

While the supernet runs a forward pass, each decision holds that pass's mixing weights (its
row of the strategy's ``Mixing``) and, for sampling strategies, the choices to compute; the
choice primitives read them through ``mixture()``. Outside a supernet forward (a plain call of
the model) a decision has no weights and every primitive runs its ``default`` choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

KINDS = ("layer", "value", "input")


class ChoiceError(ValueError):
    """A search choice defined or used in a way the supernet cannot search."""


@dataclass(eq=False)
class Decision:
    """One decision of a model's search space.

    Attributes:
        label: its name in genotypes and α files (shared places have the same label).
        kind: ``layer`` (a ``LayerChoice``), ``value`` (a ``ValueChoice``) or ``input`` (an
            ``InputChoice``).
        choices: the choice at each α column: a candidate name, a value, or a tuple of input
            indices.
        default: the column a plain forward (no supernet weights) runs.
        weights: this forward pass's ``[len(choices)]`` mixing weights, or None.
        active: the columns to compute (sampling strategies), or None (all).
    """

    label: str
    kind: str
    choices: tuple[Any, ...]
    default: int = 0
    weights: torch.Tensor | None = field(default=None, repr=False)
    active: Sequence[int] | None = field(default=None, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        """The choices as text (α files, figures)."""
        return tuple(choice_name(c) for c in self.choices)

    def mixture(self) -> list[tuple[int, torch.Tensor | None]]:
        """(column, weight) of every choice this forward computes; a weight of None is exactly
        1 (a plain forward). Columns with weight exactly 0 are kept: a gradient may flow
        through them (ProxylessNAS, GDAS' straight-through weights)."""
        if self.weights is None:
            return [(self.default, None)]
        cols = range(len(self.choices)) if self.active is None else self.active
        out = [(int(k), self.weights[int(k)]) for k in cols]
        if not out:
            raise ChoiceError(
                f"decision {self.label!r}: the strategy computes none of its choices "
                f"{list(self.names)} (an empty active set)."
            )
        return out

    def index_of(self, value: Any) -> int:
        """The column of choice ``value`` (a name, a value or input indices)."""
        for k, c in enumerate(self.choices):
            if (
                c == value
                or choice_name(c) == value
                or (isinstance(value, (list, tuple)) and tuple(value) == c)
            ):
                return k
        raise ChoiceError(
            f"decision {self.label!r} has no choice {value!r}; its choices are: "
            f"{', '.join(self.names)}."
        )


def choice_name(choice: Any) -> str:
    if isinstance(choice, tuple):
        return ",".join(map(str, choice))
    return str(choice)
