"""Regularizers: callables ``(arch) -> loss`` added to the architecture objective."""

from nas.strategies.regularizers.dirichlet_kl import DirichletKL

__all__ = ["DirichletKL"]
