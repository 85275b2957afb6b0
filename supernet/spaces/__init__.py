"""Search-space registry: ``search_space.name`` → space class, and the options each takes."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

from supernet.spaces.base import SearchSpace
from supernet.spaces.darts import DartsSpace
from supernet.spaces.mbconv import MBConvSpace
from supernet.spaces.nb201 import NB201Space

SPACES: dict[str, type[SearchSpace]] = {
    "darts": DartsSpace,
    "nb201": NB201Space,
    "mbconv": MBConvSpace,
}

# Passed by the caller from the data, not by the ``search_space`` config node.
DATA_ARGUMENTS = ("input_shape", "num_classes")


def space_defaults(name: str) -> dict[str, object]:
    """The ``search_space.*`` options of space ``name`` and their defaults (its constructor's)."""
    params = inspect.signature(SPACES[name]).parameters.values()
    return {p.name: p.default for p in params if p.name not in DATA_ARGUMENTS}


def foreign_options(name: str, options: Mapping[str, object]) -> list[str]:
    """The options that space ``name`` does not take, set to something other than what the
    spaces taking them default to. The config's ``search_space`` node holds the keys of every
    space (one typed schema), so a key of another space at that space's default changes
    nothing and is dropped; any other value is a mistake (``search_space.se=true`` with darts)."""
    taken = space_defaults(name)
    others = [space_defaults(n) for n in SPACES if n != name]
    return [
        key
        for key, value in options.items()
        if key not in taken and not any(key in d and d[key] == value for d in others)
    ]


def check_options(name: str, options: Mapping[str, object]) -> None:
    """Refuses an option space ``name`` does not take, naming the space it belongs to."""
    for key in foreign_options(name, options):
        owners = [n for n in SPACES if key in space_defaults(n)]
        where = (
            f"an option of search_space={' / '.join(owners)}"
            if owners
            else "not an option of any search space"
        )
        raise ValueError(
            f"search_space.{key}={options[key]!r} is {where}; search_space={name} takes: "
            f"{', '.join(space_defaults(name))}."
        )


def build_space(name: str, input_shape: Sequence[int], num_classes: int, **options) -> SearchSpace:
    """Builds the space ``name`` for the data's input shape and class count. ``options`` may hold
    other spaces' keys at their defaults (the config's union of keys); see ``check_options``."""
    if name not in SPACES:
        raise ValueError(
            f"Unknown search_space={name!r}. Valid choices are: {', '.join(sorted(SPACES))}."
        )
    check_options(name, options)
    taken = space_defaults(name)
    kwargs = {k: v for k, v in options.items() if k in taken}
    return SPACES[name](input_shape=input_shape, num_classes=num_classes, **kwargs)
