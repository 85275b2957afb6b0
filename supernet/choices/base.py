"""What every choice primitive offers the supernet (discovery, checks, the fixed module), and the
joint mixture of the value choices a layer depends on."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from supernet.choices.decision import ChoiceError, Decision
from supernet.choices.values import ValueChoice, ValueExpr, leaves_of

Assignment = Mapping[str, int]  # decision label -> chosen column


class ChoiceModule(nn.Module):
    """A module with search choices: a ``LayerChoice``, an ``InputChoice``, a ``Repeat`` or a
    weight-entangled layer. The supernet finds them by this type (``supernet.choices.model``).

    Subclasses say which arguments may be value choices (``value_args``), which decision is
    their own (``own_decision``: layer and input choices), check every combination of their
    values (``check``) and build the plain module of one architecture (``fixed``)."""

    def value_args(self) -> dict[str, Any]:
        """Argument name → value (an int, or a value choice or expression)."""
        return {}

    def own_decision(self) -> Decision | None:
        """This module's own decision (not a value choice), or None."""
        return None

    def bind(self, decision: Decision) -> None:
        """Makes ``decision`` (shared by every place with its label) this module's own."""
        raise ChoiceError(f"{type(self).__name__} has no decision of its own.")

    def check(self) -> None:
        """Refuses value combinations the module cannot be built with (clear error)."""

    def fixed(self, assignment: Assignment, inherit: bool) -> nn.Module:
        """The plain module of the architecture ``assignment`` (label → column), its weights
        copied from this supernet module when ``inherit``, else freshly initialised. Choice
        modules nested inside it are fixed by the caller (``fix_model``)."""
        raise NotImplementedError


def leaf_mixture(leaf: ValueChoice) -> list[tuple[Any, torch.Tensor | None]]:
    """(value, weight) of each value this forward computes; unbound: the largest, weight 1."""
    decision: Decision | None = getattr(leaf, "decision", None)
    if decision is None:
        return [(max(leaf.values), None)]
    return [(leaf.values[k], w) for k, w in decision.mixture()]


def joint_mixture(
    values: Mapping[str, Any],
) -> Iterator[tuple[dict[str, Any], torch.Tensor | None]]:
    """Every joint choice of the value choices ``values`` depend on: (argument → value,
    product of their weights or None when all are exactly 1)."""
    leaves = leaves_of(list(values.values()))
    per_leaf = [leaf_mixture(leaf) for leaf in leaves]
    for combo in itertools.product(*per_leaf):
        assignment = {leaf: v for leaf, (v, _) in zip(leaves, combo, strict=True)}
        coef = None
        for _, w in combo:
            if w is not None:
                coef = w if coef is None else coef * w
        yield {k: _at(v, assignment) for k, v in values.items()}, coef


def _at(value: Any, assignment: Mapping[ValueChoice, Any]) -> Any:
    return value.evaluate(assignment) if isinstance(value, ValueExpr) else value


def fixed_values(values: Mapping[str, Any], assignment: Assignment) -> dict[str, Any]:
    """Argument → value at the architecture ``assignment`` (label → column)."""
    leaves = leaves_of(list(values.values()))
    at = {}
    for leaf in leaves:
        if leaf.label not in assignment:
            raise ChoiceError(f"the architecture has no choice for decision {leaf.label!r}.")
        at[leaf] = leaf.values[assignment[leaf.label]]
    return {k: _at(v, at) for k, v in values.items()}


def all_values(values: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Argument → value at every joint assignment of the value choices (for ``check``)."""
    leaves = leaves_of(list(values.values()))
    for combo in itertools.product(*(leaf.values for leaf in leaves)):
        at = dict(zip(leaves, combo, strict=True))
        yield {k: _at(v, at) for k, v in values.items()}


def require_sizes(owner: str, values: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """Refuses a combination where one of the ``names`` arguments is not a positive int."""
    for combo in all_values(values):
        for name in names:
            v = combo[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ChoiceError(
                    f"{owner}: {name}={values[name]!r} takes the value {v!r} at {combo}; it must "
                    "be a positive integer for every choice (use // for integer division)."
                )
