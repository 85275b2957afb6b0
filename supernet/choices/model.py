"""A model's search choices: finding them (``discover``), and the fixed model of one
architecture (``fix_model``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from supernet.choices.base import Assignment, ChoiceModule
from supernet.choices.decision import ChoiceError, Decision
from supernet.choices.values import ValueChoice, leaves_of


def _place(path: str, arg: str | None = None) -> str:
    parts = [p for p in (path, arg) if p]
    return ".".join(parts) or "model"


def discover(model: nn.Module) -> list[Decision]:
    """The decisions of ``model``, in the order their first place appears in
    ``model.named_modules()``, each shared by every place with its label (and every use of the
    same ``ValueChoice`` object). Binds them to the primitives, names unlabelled ones after
    their first place, and checks every primitive's value combinations.

    Raises ``ChoiceError`` (naming both places) where one label names different choices."""
    decisions: dict[str, Decision] = {}
    where: dict[str, str] = {}

    def share(label: str, made: Decision, place: str) -> Decision:
        if label not in decisions:
            made.label = label
            decisions[label], where[label] = made, place
            return made
        known = decisions[label]
        if (known.kind, known.choices) != (made.kind, made.choices):
            raise ChoiceError(
                f"label {label!r} names two different decisions: a {known.kind} choice among "
                f"{list(known.names)} at {where[label]} and a {made.kind} choice among "
                f"{list(made.names)} at {place}. Give them different labels, or the same choices."
            )
        return known

    for path, module in model.named_modules():
        if not isinstance(module, ChoiceModule):
            continue
        own = module.own_decision()
        if own is not None:
            label = getattr(module, "label", None) or own.label or _place(path)
            fresh = Decision(label, own.kind, own.choices, own.default)
            module.bind(share(label, fresh, _place(path)))
        for arg, value in module.value_args().items():
            for leaf in leaves_of([value]):
                if leaf.label is None:
                    leaf.label = _place(path, arg)
                values = leaf.values
                default = values.index(max(values))
                bound = getattr(leaf, "decision", None)
                fresh = Decision(leaf.label, "value", values, default)
                d = share(leaf.label, fresh, _place(path, arg))
                if bound is not None and bound is not d and bound.label in decisions:
                    if decisions[bound.label] is not bound:
                        raise ChoiceError(
                            f"value choice {leaf!r} (at {_place(path, arg)}) already belongs to "
                            "another model (or an earlier discover of this one): a value choice "
                            "is one model's decision. Create value choices in the model's "
                            "__init__, not as default arguments or module-level constants that "
                            "every instance shares."
                        )
                leaf.decision = d
        module.check()
    return list(decisions.values())


def fix_model(model: nn.Module, assignment: Assignment, inherit: bool = True) -> nn.Module:
    """``model`` with every choice primitive replaced by its fixed module at ``assignment``
    (label → column): the chosen candidate, plain layers of the chosen sizes, the chosen
    inputs, the chosen depth's blocks. Changes ``model`` in place and returns it (a primitive
    at the top level is returned replaced)."""
    if isinstance(model, ChoiceModule):
        return fix_model(model.fixed(assignment, inherit), assignment, inherit)
    for name, child in list(model.named_children()):
        setattr(model, name, fix_model(child, assignment, inherit))
    return model


def assignment_of(decisions: list[Decision], choices: Mapping[str, Any]) -> dict[str, int]:
    """label → column of a genotype's ``choices`` (label → choice value or name)."""
    known = {d.label: d for d in decisions}
    missing = [label for label in known if label not in choices]
    extra = [label for label in choices if label not in known]
    if missing or extra:
        raise ChoiceError(
            f"the architecture's decisions do not match the model's: missing {missing}, unknown "
            f"{extra}; the model's decisions are: {', '.join(known)}."
        )
    return {label: known[label].index_of(choices[label]) for label in known}


def has_choices(model: nn.Module) -> bool:
    return any(isinstance(m, ChoiceModule) for m in model.modules())


__all__ = ["ValueChoice", "assignment_of", "discover", "fix_model", "has_choices"]
