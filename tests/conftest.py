"""The test environment: offline W&B, Triton's interpreter without a GPU, one thread, and the
DDP tests' own port. What tests share (configs, runs, tiny modules) is in ``tests/helpers``."""

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


@pytest.fixture
def spawned_ranks(monkeypatch):
    """For a test that spawns DDP ranks: a free port of its own, and the environment as it was
    afterwards. Lightning otherwise writes its first port (and address) into ``os.environ`` for
    every later test of the process, which pytest-xdist's other worker knows nothing of. The
    ranks get the module's tensors through files, not passed descriptors: that avoids
    multiprocessing's "bad value(s) in fds_to_keep" with many tensors."""
    from lightning.fabric.plugins.environments.lightning import find_free_network_port

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(find_free_network_port()))
    previous = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")
    yield
    torch.multiprocessing.set_sharing_strategy(previous)
