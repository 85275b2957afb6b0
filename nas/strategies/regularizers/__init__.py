"""Regularizers: ``nas.strategies.protocols.Regularizer``, callables ``(arch) -> loss`` added to
the architecture objective; an ``ObjectiveRegularizer`` (HardwareCost) forms the objective from
the loss itself with ``combine(loss, arch, masks)``."""

from nas.strategies.regularizers.beta_decay import BetaDecay
from nas.strategies.regularizers.dirichlet_kl import DirichletKL
from nas.strategies.regularizers.hardware_cost import HardwareCost
from nas.strategies.regularizers.resource import ResourceCost, op_costs
from nas.strategies.regularizers.zero_one import ZeroOneLoss

__all__ = [
    "BetaDecay",
    "DirichletKL",
    "HardwareCost",
    "ResourceCost",
    "ZeroOneLoss",
    "op_costs",
]
