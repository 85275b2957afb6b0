"""Modifiers: changes to the supernet or to the mixing that a method adds on top of its sampler.

A modifier may provide ``supernet_options()`` (build options, e.g. partial channels),
``arch_options()`` (extra architecture parameters, e.g. edge β), ``mixing(mix, arch)`` and
``probabilities(probs, arch)`` (transform the sampler's output), ``setup(space=..., seed=...)``
and ``on_epoch_start(epoch, max_epochs, module)``.
"""

from nas.strategies.modifiers.edge_normalization import EdgeNormalization
from nas.strategies.modifiers.op_pruning import ProgressivePruning
from nas.strategies.modifiers.partial_channels import PartialChannels

__all__ = ["EdgeNormalization", "PartialChannels", "ProgressivePruning"]
