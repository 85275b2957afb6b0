"""Value choices: integers (or floats) a layer is parametrized by, and arithmetic on them.

``ValueChoice([64, 96, 128], label="width")`` is one decision; ``width * 4``, ``width // heads``
or ``width + 16`` are expressions whose value follows the decisions they are made of (their
``leaves``). A layer of ``supernet.choices.layers`` takes either anywhere it takes an int; the
supernet holds the layer at the largest value and uses its first channels (weight entanglement).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from supernet.choices.decision import ChoiceError

Number = int | float


class ValueExpr:
    """A value computed from value choices: evaluate it at an assignment of its leaves."""

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any], text: str):
        self.fn, self.args, self.text = fn, tuple(args), text

    def leaves(self) -> list[ValueChoice]:
        """The distinct value choices it depends on, in order of appearance."""
        out: list[ValueChoice] = []
        for a in self.args:
            for leaf in a.leaves() if isinstance(a, ValueExpr) else ():
                if all(leaf is not seen for seen in out):
                    out.append(leaf)
        return out

    def evaluate(self, assignment: Mapping[ValueChoice, Any]) -> Any:
        """The value at ``assignment`` (leaf → one of its values)."""
        return self.fn(*(evaluate(a, assignment) for a in self.args))

    def all_values(self) -> list[Any]:
        """Its value at every joint assignment of its leaves (leaf order, first leaf slowest)."""
        return [self.evaluate(a) for a in joint_assignments(self.leaves())]

    def max(self) -> Any:
        return max(self.all_values())

    def to_int(self) -> ValueExpr:
        """The value rounded down to an integer (a width from a float ratio: ``int(dim * r)``,
        as AutoFormer computes its MLP width)."""
        return ValueExpr(int, (self,), f"int({self.text})")

    def __repr__(self) -> str:
        return self.text

    # Arithmetic builds expressions; comparisons are not overloaded (they stay identity-based,
    # so value choices can be dictionary keys).
    def _op(self, other: Any, fn: Callable, sym: str, reverse: bool = False) -> ValueExpr:
        if not isinstance(other, (int, float, ValueExpr)):
            return NotImplemented
        a, b = (other, self) if reverse else (self, other)
        return ValueExpr(fn, (a, b), f"({_text(a)} {sym} {_text(b)})")

    def __add__(self, o):
        return self._op(o, operator.add, "+")

    def __radd__(self, o):
        return self._op(o, operator.add, "+", True)

    def __sub__(self, o):
        return self._op(o, operator.sub, "-")

    def __rsub__(self, o):
        return self._op(o, operator.sub, "-", True)

    def __mul__(self, o):
        return self._op(o, operator.mul, "*")

    def __rmul__(self, o):
        return self._op(o, operator.mul, "*", True)

    def __floordiv__(self, o):
        return self._op(o, operator.floordiv, "//")

    def __rfloordiv__(self, o):
        return self._op(o, operator.floordiv, "//", True)

    def __truediv__(self, o):
        return self._op(o, operator.truediv, "/")

    def __rtruediv__(self, o):
        return self._op(o, operator.truediv, "/", True)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class ValueChoice(ValueExpr):
    """One decision among ``values`` (ints such as widths, kernel sizes, depths, or floats
    such as expansion ratios). Value choices with the same ``label`` are one decision (they
    must list the same values); without a label, the supernet names it after the first place
    it is used (``<module path>.<argument>``)."""

    def __init__(self, values: Sequence[Number], label: str | None = None):
        values = list(values)
        if not values:
            raise ChoiceError(f"ValueChoice(label={label!r}) needs at least one value.")
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            raise ChoiceError(
                f"ValueChoice(label={label!r}): values must be numbers, got {bad!r} in {values}."
            )
        if len(set(values)) != len(values):
            raise ChoiceError(f"ValueChoice(label={label!r}): repeated values in {values}.")
        if label is not None and (not isinstance(label, str) or not label):
            raise ChoiceError(f"ValueChoice: a label must be a non-empty string, got {label!r}.")
        self.values, self.label = tuple(values), label
        super().__init__(lambda: None, (), f"ValueChoice({list(values)})")

    def leaves(self) -> list[ValueChoice]:
        return [self]

    def evaluate(self, assignment: Mapping[ValueChoice, Any]) -> Any:
        if self not in assignment:
            raise ChoiceError(f"no value assigned to {self!r}.")
        return assignment[self]

    def __repr__(self) -> str:
        return f"ValueChoice({list(self.values)}, label={self.label!r})"


def _text(a: Any) -> str:
    if isinstance(a, ValueChoice):
        return a.label or repr(a)
    return repr(a)


def evaluate(value: Any, assignment: Mapping[ValueChoice, Any]) -> Any:
    """``value`` at ``assignment`` if it is a value choice or expression, else itself."""
    return value.evaluate(assignment) if isinstance(value, ValueExpr) else value


def leaves_of(values: Sequence[Any]) -> list[ValueChoice]:
    """The distinct value choices ``values`` (constants or expressions) depend on."""
    out: list[ValueChoice] = []
    for v in values:
        for leaf in v.leaves() if isinstance(v, ValueExpr) else ():
            if all(leaf is not seen for seen in out):
                out.append(leaf)
    return out


def joint_assignments(leaves: Sequence[ValueChoice]) -> Iterator[dict[ValueChoice, Any]]:
    """Every joint assignment of ``leaves``' values."""
    for combo in itertools.product(*(leaf.values for leaf in leaves)):
        yield dict(zip(leaves, combo, strict=True))


def largest(value: Any) -> Any:
    """The largest value ``value`` takes (itself if it is a constant)."""
    return value.max() if isinstance(value, ValueExpr) else value
