"""Collectives for code that runs on every DDP rank outside Lightning's wrappers.

The Hessian diagnostic (``nas/search/hessian.py``) and DARTS-PT (``nas/search/pt_selection.py``) call the
supernet directly, so Lightning's reducer does not average anything for them: these helpers do.
Every one is a no-op (no ``torch.distributed`` call at all) unless a process group with more
than one rank is initialised, so single-process runs and the main process of ``ddp_spawn``
(whose workers are gone after the fit) are unaffected.

Every rank must call a helper the same number of times, in the same order, with tensors of
the same shapes (what a collective requires); the reductions put all tensors of one dtype into
one flat buffer, so each call is one collective per dtype.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


def is_distributed() -> bool:
    """Whether a process group of more than one rank is initialised."""
    return world_size() > 1


def world_size() -> int:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


def rank() -> int:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    return dist.get_rank()


def _comm_device(device: torch.device) -> torch.device:
    """Where a collective's buffer must live: NCCL only reduces CUDA tensors."""
    if torch.distributed.get_backend() == "nccl" and device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _groups(tensors: Sequence[torch.Tensor]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.dtype, t.device), []).append(i)
    return groups


def _flat_collective(tensors: Sequence[torch.Tensor], collective) -> Sequence[torch.Tensor]:
    """Runs ``collective`` in place on one flat buffer per (dtype, device) of ``tensors`` and
    copies the result back: one collective call per group instead of one per tensor."""
    for (_, device), idx in _groups(tensors).items():
        flat = torch.cat([tensors[i].detach().reshape(-1) for i in idx])
        flat = flat.to(_comm_device(device))
        collective(flat)
        flat = flat.to(device)
        offset = 0
        for i in idx:
            t = tensors[i]
            t.detach().copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()
    return tensors


def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    """Sums ``tensors`` over ranks, in place; returns them."""
    if not is_distributed() or not tensors:
        return tensors
    dist = torch.distributed
    return _flat_collective(tensors, lambda flat: dist.all_reduce(flat, op=dist.ReduceOp.SUM))


def all_reduce_mean_(tensors: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    """Averages ``tensors`` over ranks, in place; returns them."""
    n = world_size()
    if n == 1:
        return tensors
    all_reduce_sum_(tensors)
    for t in tensors:
        t.detach().div_(n)
    return tensors


def sum_floats(values: Sequence[float]) -> list[float]:
    """Each value summed over ranks (in float64): e.g. correct predictions and sample counts."""
    if not is_distributed():
        return [float(v) for v in values]
    buf = torch.tensor([float(v) for v in values], dtype=torch.float64)
    all_reduce_sum_([buf])
    return buf.tolist()


def broadcast_(tensors: Sequence[torch.Tensor], src: int = 0) -> Sequence[torch.Tensor]:
    """Copies rank ``src``'s ``tensors`` to every rank, in place; returns them."""
    if not is_distributed() or not tensors:
        return tensors
    return _flat_collective(tensors, lambda flat: torch.distributed.broadcast(flat, src=src))


def broadcast_float(value: float, src: int = 0) -> float:
    """Rank ``src``'s ``value`` on every rank (a float64 round trip, exact for floats/ints)."""
    if not is_distributed():
        return value
    buf = torch.tensor([float(value)], dtype=torch.float64)
    broadcast_([buf], src)
    return float(buf.item())


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Averages ``.grad`` over ranks, as DDP's reducer does for the weights it wraps.

    A parameter without a gradient on this rank contributes zeros; one without a gradient on
    every rank keeps ``grad=None`` (as DDP leaves globally unused parameters), so optimizers
    skip it alike on all ranks. One collective per dtype (gradients and presence flags).
    """
    if not is_distributed():
        return
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flags = torch.tensor([p.grad is not None for p in params], dtype=torch.float64)
    all_reduce_sum_([*grads, flags])
    n = world_size()
    for p, g, present in zip(params, grads, flags.tolist()):
        if present:
            p.grad = g.div_(n)


def rank_shard(batch: Batch) -> Batch:
    """This rank's part of a global batch: every ``world_size``-th sample from position
    ``rank`` (the training sampler's split); a batch smaller than the world wraps around, so
    no rank gets nothing. The whole batch in one process."""
    n = world_size()
    if n == 1:
        return batch
    x, y = batch
    size = y.shape[0]
    idx = torch.arange(rank(), max(size, n), n) % size
    idx = idx.to(y.device)
    return x[idx], y[idx]
