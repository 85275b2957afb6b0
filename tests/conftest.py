"""Shared fixtures: tiny spaces and search modules built without Hydra."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Without a GPU the Triton kernels run through Triton's interpreter; the variable must be set
# before any kernel is defined, hence here.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The test models are tiny: one thread avoids OpenMP fan-out costs and, on a busy 2-core
# machine, the thrashing of spin-waiting threads (seen: 100x slower steps).
torch.set_num_threads(1)


def tiny_search_module(
    arch_grad, C: int = 4, layers: int = 3, steps: int = 2, seed: int = 0, dtype=torch.float32
):
    """A SearchModule on a DARTS space small enough for exact autograd checks."""
    from functools import partial

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
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g, dtype=dtype), torch.randint(
        0, classes, (n,), generator=g
    )


@pytest.fixture
def tiny_module_factory():
    return tiny_search_module
