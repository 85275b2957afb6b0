"""Modifiers: changes to the supernet or to the mixing that a method adds on top of its sampler.

Each subclasses ``nas.strategies.protocols.Modifier`` and overrides the hooks it needs (the
others are no-ops): ``supernet_options()`` (build options, e.g. partial channels),
``arch_options()`` (extra architecture parameters, e.g. edge β), ``mixing(mix, arch)`` and
``probabilities(probs, arch)`` (transform the sampler's output), ``setup(seed=..., space=...)``,
``on_epoch_start(epoch, max_epochs, state)`` and ``restore(state)`` (after a checkpoint's
strategy state is loaded, before its weights are), and ``perturb_weight_step(state, arch,
batch)`` (the architecture the weight step mixes with: SDARTS' perturbations); ``state`` is the
search as ``nas.strategies.protocols.SearchState`` describes it.
"""

from nas.strategies.modifiers.auxiliary_skip import AuxiliarySkip
from nas.strategies.modifiers.edge_normalization import EdgeNormalization
from nas.strategies.modifiers.op_pruning import ProgressivePruning
from nas.strategies.modifiers.partial_channels import PartialChannels
from nas.strategies.modifiers.perturbation import AdversarialPerturbation, RandomSmoothing
from nas.strategies.modifiers.progressive_learning import ProgressiveLearning
from nas.strategies.modifiers.skip_dropout import SkipDropout

__all__ = [
    "AdversarialPerturbation",
    "AuxiliarySkip",
    "EdgeNormalization",
    "PartialChannels",
    "ProgressiveLearning",
    "ProgressivePruning",
    "RandomSmoothing",
    "SkipDropout",
]
