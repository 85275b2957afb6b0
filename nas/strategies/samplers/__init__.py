"""Samplers: α → mixing weights (and, for sampling methods, the ops to compute)."""

from nas.strategies.samplers.base import Mixing, Sampler
from nas.strategies.samplers.binary_gates import BinaryGateSampler
from nas.strategies.samplers.dirichlet import DirichletSampler
from nas.strategies.samplers.gdas import GumbelHardSampler
from nas.strategies.samplers.sigmoid import SigmoidSampler
from nas.strategies.samplers.snas import GumbelSoftSampler
from nas.strategies.samplers.softmax import SoftmaxSampler
from nas.strategies.samplers.uniform import UniformPathSampler

__all__ = [
    "BinaryGateSampler",
    "DirichletSampler",
    "GumbelHardSampler",
    "GumbelSoftSampler",
    "Mixing",
    "Sampler",
    "SigmoidSampler",
    "SoftmaxSampler",
    "UniformPathSampler",
]
