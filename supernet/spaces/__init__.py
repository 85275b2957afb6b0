"""Search-space registry: ``search_space.name`` → space class, and the options each takes.

A new space is one file (a ``SearchSpace`` subclass, registered with ``register_space``) and
one YAML (``conf/search_space/<name>.yaml``: ``name`` and the constructor's keys it sets).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

from supernet.genotypes import GENOTYPE_TYPES, Genotype, GenotypeBase
from supernet.spaces.base import SearchSpace
from supernet.spaces.darts import DartsSpace
from supernet.spaces.gpt import GPTSpace
from supernet.spaces.mbconv import MBConvSpace
from supernet.spaces.module import ModuleSpace
from supernet.spaces.nb201 import NB201Space
from supernet.spaces.vit import ViTSpace

SPACES: dict[str, type[SearchSpace]] = {
    "darts": DartsSpace,
    "nb201": NB201Space,
    "mbconv": MBConvSpace,
    "module": ModuleSpace,
    "vit": ViTSpace,
    "gpt": GPTSpace,
}

# Passed by the caller from the data, not by the ``search_space`` config node.
DATA_ARGUMENTS = ("input_shape", "num_classes")


def register_space(name: str, cls: type[SearchSpace]) -> type[SearchSpace]:
    """Makes ``search_space=<name>`` build ``cls``; its constructor's keyword arguments (after
    ``input_shape`` and ``num_classes``) are its ``search_space.*`` keys, and its
    ``genotype_type`` reads the genotype files of space ``name``. Registering the same class
    again is a no-op; another class under a taken name is refused. (Then
    ``nas.run.schema.register_configs()`` puts its keys into the config schema.)"""
    if not (isinstance(cls, type) and issubclass(cls, SearchSpace)):
        raise TypeError(f"register_space({name!r}, {cls!r}): not a SearchSpace subclass.")
    if getattr(cls, "name", None) != name:
        raise ValueError(
            f"register_space({name!r}, {cls.__name__}): the class's name attribute is "
            f"{getattr(cls, 'name', None)!r}; it must be {name!r} (alphas and genotype files "
            "record it)."
        )
    genotype_type = getattr(cls, "genotype_type", None)
    if not (isinstance(genotype_type, type) and issubclass(genotype_type, GenotypeBase)):
        raise TypeError(
            f"register_space({name!r}, {cls.__name__}): its genotype_type must be a "
            f"supernet.genotypes.GenotypeBase subclass, got {genotype_type!r}."
        )
    if SPACES.get(name, cls) is not cls:
        raise ValueError(
            f"search_space={name!r} is already registered ({SPACES[name].__name__}); "
            f"registered spaces: {', '.join(sorted(SPACES))}."
        )
    missing = [a for a in DATA_ARGUMENTS if a not in inspect.signature(cls).parameters]
    if missing:
        raise TypeError(
            f"register_space({name!r}, {cls.__name__}): its constructor must take {missing} "
            "(the data's input shape and class count)."
        )
    if genotype_type is not Genotype:  # its files name the space: load_genotype finds the type
        if GENOTYPE_TYPES.get(name, genotype_type) is not genotype_type:
            raise ValueError(
                f"register_space({name!r}, {cls.__name__}): genotypes of space {name!r} are "
                f"already {GENOTYPE_TYPES[name].__name__}, not {genotype_type.__name__}."
            )
        GENOTYPE_TYPES[name] = genotype_type
    SPACES[name] = cls
    return cls


def space_class(name: str) -> type[SearchSpace]:
    """The class of ``search_space=<name>``; an unknown name is refused with the valid ones."""
    if name not in SPACES:
        raise ValueError(
            f"Unknown search_space={name!r}. Valid choices are: {', '.join(sorted(SPACES))}."
        )
    return SPACES[name]


def space_defaults(name: str) -> dict[str, object]:
    """The ``search_space.*`` options of space ``name`` and their defaults (its constructor's)."""
    params = inspect.signature(space_class(name)).parameters.values()
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
        if key not in taken and not any(key in d and _same(d[key], value) for d in others)
    ]


def _same(a: object, b: object) -> bool:
    """Equal as config values: a tuple default equals the list the config holds."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


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
    cls = space_class(name)
    check_options(name, options)
    taken = space_defaults(name)
    kwargs = {k: v for k, v in options.items() if k in taken}
    return cls(input_shape=input_shape, num_classes=num_classes, **kwargs)
