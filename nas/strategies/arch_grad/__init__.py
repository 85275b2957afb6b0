"""Architecture-gradient modes: how the α gradient of the validation loss is computed."""

from nas.strategies.arch_grad.first_order import FirstOrder
from nas.strategies.arch_grad.second_order import SecondOrder

__all__ = ["FirstOrder", "SecondOrder"]
