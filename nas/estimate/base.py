"""The estimator contract: a score of a found architecture beside weight sharing.

An estimator answers "how good is this genotype?" without training it: a tabular benchmark's
lookup (``benchmark``: NAS-Bench-201), and next zero-cost proxies and learned predictors. The run
(``estimators=[...]``) calls every named estimator that applies to the space after the genotype
is chosen and records its fields in ``summary.json`` under the estimator's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from nas.core.registry import Registry
from supernet.genotypes import GenotypeBase
from supernet.spaces.base import SearchSpace


class Estimator(ABC):
    """Scores a genotype of a space. Options come from the run as keyword arguments."""

    def applies_to(self, space: SearchSpace) -> bool:
        """Whether this estimator can score genotypes of ``space`` (default: every space)."""
        return True

    @abstractmethod
    def estimate(self, space: SearchSpace, genotype: GenotypeBase) -> dict[str, Any]:
        """The fields recorded in ``summary.json`` under the estimator's name; a score that is
        unavailable says why (``{"available": False, "reason": ...}``), it never raises."""


ESTIMATORS: Registry[type[Estimator]] = Registry("estimator", "estimators")


def register_estimator(name: str, cls: type[Estimator]) -> type[Estimator]:
    """Makes ``cls`` available as ``estimators=[..., name]``; returns it (usable as a
    decorator's body)."""
    if not (isinstance(cls, type) and issubclass(cls, Estimator)):
        raise TypeError(f"register_estimator({name!r}, {cls!r}): not an Estimator subclass.")
    return ESTIMATORS.add(name, cls)


def build_estimator(name: str, **options: Any) -> Estimator:
    """The estimator registered as ``name``, built with ``options``."""
    return ESTIMATORS.lookup(name)(**options)
