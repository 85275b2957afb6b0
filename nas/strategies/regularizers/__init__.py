"""Regularizers: callables ``(arch) -> loss`` added to the architecture objective."""

from nas.strategies.regularizers.dirichlet_kl import DirichletKL
from nas.strategies.regularizers.resource import ResourceCost, op_costs

__all__ = ["DirichletKL", "ResourceCost", "op_costs"]
