"""Architecture-gradient modes (``nas.strategies.protocols.ArchGradMode``): how the α gradient
of the validation loss is computed, given the search as ``ArchGradState`` (supernet, α, loss,
α objective, weight optimizer), not the LightningModule."""

from nas.strategies.arch_grad.first_order import FirstOrder
from nas.strategies.arch_grad.second_order import SecondOrder

__all__ = ["FirstOrder", "SecondOrder"]
