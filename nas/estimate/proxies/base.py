"""The zero-cost proxy contract: a training-free score of a freshly initialised child network.

A proxy is one function ``score(inputs: ProxyInputs) -> float`` registered by name
(``register_proxy``), one small file per proxy citing its paper. Data-free proxies
(``data_free=True``: params, flops, l2_norm, synflow, zen) read no dataset; the others take
``inputs.batches``, a few batches of the run's data, and refuse to run without them (a
``ValueError`` naming ``estimate.batches``). A proxy may change the network it is given
(synflow replaces its weights by their absolute values): the caller passes each proxy its own
copy. Higher is better for every proxy (a proxy whose paper ranks the other way negates).
A score that cannot be computed is ``float("nan")`` or ``±inf``, never an exception for a
network the proxy's definition covers; the caller reports it as non-finite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from nas.core.registry import Registry


def logits_of(output) -> torch.Tensor:
    """The logits of a child network's output: DARTS' child returns ``(logits, aux_logits)``."""
    return output[0] if isinstance(output, (tuple, list)) else output


@dataclass
class ProxyInputs:
    """What a proxy reads.

    model: the child network, freshly initialised, in train mode, on ``device``.
    input_shape: ``[channels, height, width]`` of one image (data-free proxies make inputs).
    num_classes: the classifier's outputs.
    batches: ``(images, labels)`` batches of the run's data, normalised, on ``device``; empty
        for a data-free proxy.
    loss: the training loss on logits and labels.
    seed: for proxies that draw random inputs (zen's Gaussian input).
    """

    model: nn.Module
    input_shape: Sequence[int]
    num_classes: int
    batches: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x))


@dataclass(frozen=True)
class Proxy:
    """A registered proxy: its function, whether it reads data, and its paper."""

    name: str
    score: Callable[[ProxyInputs], float]
    data_free: bool
    paper: str


PROXIES: Registry[Proxy] = Registry("zero-cost proxy", "estimate.proxies")


def register_proxy(
    name: str, score: Callable[[ProxyInputs], float], data_free: bool, paper: str
) -> Proxy:
    """Makes ``estimate.proxies=[..., name]`` compute ``score``; returns the ``Proxy``."""
    return PROXIES.add(name, Proxy(name, score, data_free, paper))


def get_proxy(name: str) -> Proxy:
    return PROXIES.lookup(name)
