"""The sampler interface: ``Sampler`` and ``Mixing`` live with the other contracts in
``nas/strategies/protocols.py``; this module keeps the samplers' import path."""

from nas.strategies.protocols import Mixing, Sampler

__all__ = ["Mixing", "Sampler"]
