"""Samplers: α → mixing weights (and, for sampling methods, the ops to compute).

A registry by name: ``strategy.sampler: {name: <registered name>, <option>: ...}`` in a strategy
YAML builds ``SAMPLERS[name](**options)`` (``build_sampler``); a ``_target_`` class path still
works as for any Hydra node. A new sampler is one file that subclasses ``Sampler``
(``nas/strategies/protocols.py``) and calls ``register_sampler("name", TheClass)``, plus one
``conf/strategy/<method>.yaml`` that names it.
"""

from __future__ import annotations

import inspect
from typing import Any

from nas.core.registry import Registry
from nas.strategies.samplers.base import Mixing, Sampler
from nas.strategies.samplers.binary_gates import BinaryGateSampler
from nas.strategies.samplers.dirichlet import DirichletSampler
from nas.strategies.samplers.gdas import GumbelHardSampler
from nas.strategies.samplers.sandwich import SandwichSampler
from nas.strategies.samplers.sigmoid import SigmoidSampler
from nas.strategies.samplers.snas import GumbelSoftSampler
from nas.strategies.samplers.softmax import SoftmaxSampler
from nas.strategies.samplers.uniform import UniformPathSampler

__all__ = [
    "SAMPLERS",
    "SandwichSampler",
    "BinaryGateSampler",
    "DirichletSampler",
    "GumbelHardSampler",
    "GumbelSoftSampler",
    "Mixing",
    "Sampler",
    "SigmoidSampler",
    "SoftmaxSampler",
    "UniformPathSampler",
    "build_sampler",
    "register_sampler",
]

SAMPLERS: Registry[type[Sampler]] = Registry("sampler", "strategy.sampler.name")


def register_sampler(name: str, cls: type[Sampler]) -> type[Sampler]:
    """Makes ``cls`` buildable as ``strategy.sampler.name=<name>``; returns ``cls`` (so it
    can decorate). Registering the same class again is a no-op; another class under a taken
    name is refused."""
    if not (isinstance(cls, type) and issubclass(cls, Sampler)):
        raise TypeError(
            f"register_sampler({name!r}, {cls!r}): a sampler subclasses "
            "nas.strategies.protocols.Sampler."
        )
    return SAMPLERS.add(name, cls)


def build_sampler(name: str, **options: Any) -> Sampler:
    """``SAMPLERS[name](**options)``; an unknown name or option is an error naming the valid
    ones."""
    cls = SAMPLERS.lookup(name)
    params = inspect.signature(cls).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        valid = [p.name for p in params]
        unknown = [k for k in options if k not in valid]
        if unknown:
            raise ValueError(
                f"strategy.sampler.{unknown[0]}={options[unknown[0]]!r} is not an option of "
                f"sampler {name!r} ({cls.__qualname__}); it takes: "
                f"{', '.join(valid) or 'no options'}."
            )
    return cls(**options)


for _name, _cls in {
    "softmax": SoftmaxSampler,  # DARTS
    "gumbel_hard": GumbelHardSampler,  # GDAS
    "gumbel_soft": GumbelSoftSampler,  # SNAS
    "sigmoid": SigmoidSampler,  # FairDARTS
    "dirichlet": DirichletSampler,  # DrNAS
    "binary_gates": BinaryGateSampler,  # ProxylessNAS
    "uniform_path": UniformPathSampler,  # RSWS, SPOS
}.items():
    register_sampler(_name, _cls)
