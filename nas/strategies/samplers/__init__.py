"""Samplers: α → mixing weights (and, for sampling methods, the ops to compute)."""

from nas.strategies.samplers.base import Mixing, Sampler
from nas.strategies.samplers.softmax import SoftmaxSampler

__all__ = ["Mixing", "Sampler", "SoftmaxSampler"]
