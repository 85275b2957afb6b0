"""The genotype of a ``module`` space: decision label → choice, with each decision's options.

``genotype.json``::

    {"space": "module",
     "choices": {"act": "gelu", "width": 96, "skip_from": [0, 2]},
     "options": {"act": ["relu", "gelu"], "width": [64, 96, 128], "skip_from": [[0, 1], [0, 2], [1, 2]]}}

in the model's decision order: a layer choice names its candidate, a value choice its value, an
input choice its input indices. ``options`` makes the file explain itself and lets the strategy's
machinery (α column = option index) work from the file alone; the text form is ``module:`` and
the compact JSON of the choices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from supernet.genotypes import GENOTYPE_TYPES, GenotypeBase, GenotypeError, KeptEdge

PREFIX = "module:"
CELL = "decisions"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _same(a: Any, b: Any) -> bool:
    return _plain(a) == _plain(b)


@dataclass(frozen=True)
class ModuleGenotype(GenotypeBase):
    """One architecture of a model with choice primitives.

    Attributes:
        choices: (label, choice) per decision, in the model's decision order.
        options: (label, all choices) per decision, or empty when read from the text form (the
            space fills them in: ``ModuleSpace.resolve``).
    """

    choices: tuple[tuple[str, Any], ...]
    options: tuple[tuple[str, tuple[Any, ...]], ...] = field(default=())
    space: str = "module"

    known_ops: ClassVar[frozenset[str]] = frozenset()
    diagram: ClassVar[str] = "decisions"

    def __post_init__(self) -> None:
        choices = tuple((str(k), _freeze(v)) for k, v in dict(self.choices).items())
        options = tuple(
            (str(k), tuple(_freeze(o) for o in v)) for k, v in dict(self.options).items()
        )
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "options", options)
        if options:
            labels = [k for k, _ in choices]
            if labels != [k for k, _ in options]:
                raise GenotypeError(
                    f"module genotype: 'choices' names the decisions {labels} but 'options' "
                    f"{[k for k, _ in options]}; they must list the same decisions in the same order."
                )
            self.columns()  # every choice among its options

    def choice_map(self) -> dict[str, Any]:
        return dict(self.choices)

    def columns(self) -> tuple[int, ...]:
        """Each decision's α column (its choice's index among its options)."""
        if not self.options:
            raise GenotypeError(
                "module genotype without 'options': resolve it with its space "
                "(ModuleSpace.resolve) before asking for α columns."
            )
        out = []
        for (label, choice), (_, opts) in zip(self.choices, self.options, strict=True):
            hits = [k for k, o in enumerate(opts) if _same(o, choice)]
            if not hits:
                raise GenotypeError(
                    f"module genotype: decision {label!r} chooses {_plain(choice)!r}, not one of "
                    f"its options {[_plain(o) for o in opts]}."
                )
            out.append(hits[0])
        return tuple(out)

    def __str__(self) -> str:
        return PREFIX + json.dumps({k: _plain(v) for k, v in self.choices}, separators=(",", ":"))

    def kept_edges(self) -> dict[str, tuple[KeptEdge, ...]]:
        return {CELL: tuple((str(k), r, r + 1) for r, k in enumerate(self.columns()))}

    def with_op(self, cell: str, slot: int, op: str) -> ModuleGenotype:
        label, _ = self.choices[slot]
        new = list(self.choices)
        new[slot] = (label, dict(self.options)[label][int(op)])
        return replace(self, choices=tuple(new))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "space": self.space,
            "choices": {k: _plain(v) for k, v in self.choices},
        }
        if self.options:
            out["options"] = {k: [_plain(o) for o in v] for k, v in self.options}
        return out

    @classmethod
    def matches_text(cls, text: str) -> bool:
        return text.strip().startswith(PREFIX)

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> ModuleGenotype:
        if not isinstance(data, dict) or not isinstance(data.get("choices"), dict):
            raise GenotypeError(
                f"{source}: a module genotype is an object with 'choices' (decision label -> "
                f"choice) and optionally 'options'; got {data!r}."
            )
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise GenotypeError(f"{source}: 'options' must map decision labels to lists.")
        return cls(
            choices=tuple(data["choices"].items()),
            options=tuple(options.items()),
            space=data.get("space", "module"),
        )

    @classmethod
    def from_text(cls, text: str, space: str = "module") -> ModuleGenotype:
        body = text.strip()[len(PREFIX) :]
        try:
            choices = json.loads(body)
        except json.JSONDecodeError as err:
            raise GenotypeError(
                f"module genotype text {text!r}: not JSON after 'module:' ({err})."
            ) from None
        if not isinstance(choices, dict):
            raise GenotypeError(
                f"module genotype text {text!r}: expected a JSON object of choices."
            )
        return cls(choices=tuple(choices.items()), space=space)


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


GENOTYPE_TYPES["module"] = ModuleGenotype
