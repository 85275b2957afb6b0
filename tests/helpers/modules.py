"""Tiny spaces, search modules and batches, built without Hydra, for exact checks."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # tests/conftest.py sets TRITON_INTERPRET before any kernel is defined
    from supernet.spaces.nb201 import NB201Space


def nb201(C: int = 4, **kw) -> NB201Space:
    """A one-cell NAS-Bench-201 space on 8x8 inputs, 5 classes."""
    from supernet.spaces.nb201 import NB201Space

    return NB201Space((3, 8, 8), 5, C=C, layers=1, **kw)


def search_module(space, sampler, modifiers=(), arch_grad=None, regularizers=(), seed=0):
    """A SearchModule of ``space`` with the given mechanics (first-order α by default)."""
    from nas.search.module import SearchModule
    from nas.strategies import Strategy
    from nas.strategies.arch_grad import FirstOrder

    strategy = Strategy(
        "test",
        sampler,
        arch_grad or FirstOrder(),
        regularizers=list(regularizers),
        modifiers=list(modifiers),
    )
    return SearchModule(
        space,
        strategy,
        weight_optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        arch_optimizer=partial(torch.optim.Adam, lr=3e-4),
        seed=seed,
    )


def tiny_search_module(
    arch_grad, C: int = 4, layers: int = 3, steps: int = 2, seed: int = 0, dtype=torch.float32
):
    """A SearchModule on a DARTS space small enough for exact autograd checks."""
    from nas.search.module import SearchModule
    from nas.strategies import SoftmaxSampler, Strategy
    from supernet.spaces.darts import DartsSpace

    torch.manual_seed(seed)
    space = DartsSpace(
        input_shape=(3, 8, 8), num_classes=5, C=C, layers=layers, steps=steps, multiplier=steps
    )
    module = SearchModule(
        space,
        Strategy(name="test", sampler=SoftmaxSampler(), arch_grad=arch_grad),
        weight_optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=3e-4),
        arch_optimizer=partial(torch.optim.Adam, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3),
        seed=seed,
    )
    return module.to(dtype)


def random_batch(n: int = 4, classes: int = 5, dtype=torch.float32, seed: int = 0):
    """``n`` random 3x8x8 images and labels, the same for the same seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g, dtype=dtype), torch.randint(
        0, classes, (n,), generator=g
    )
