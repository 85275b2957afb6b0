"""A registry of components by name: what ``register_*`` and ``build_*`` share.

Samplers, selection rules and estimators are each one registry: a user adds one by name from
their own file, and a config names it. Registering the same object again is a no-op (a module
imported twice); another object under a taken name is refused, and an unknown name is an error
naming the config key and the registered names.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """``name -> component``; ``what`` names a component in messages ("sampler"), ``key`` is
    the config key that names one (``strategy.sampler.name``)."""

    def __init__(self, what: str, key: str, entries: dict[str, T] | None = None):
        super().__init__(entries or {})
        self.what, self.key = what, key

    def add(self, name: str, component: T) -> T:
        """Registers ``component`` as ``name``; returns it."""
        if self.get(name, component) is not component:
            raise ValueError(
                f"{self.what.capitalize()} name {name!r} is taken by {self[name]!r}; choose "
                f"another name (registered: {', '.join(sorted(self))})."
            )
        self[name] = component
        return component

    def lookup(self, name: str) -> T:
        """The component registered as ``name``."""
        if name not in self:
            raise ValueError(
                f"{self.key}: unknown {self.what} {name!r}. Valid choices are: "
                f"{', '.join(sorted(self))}."
            )
        return self[name]
