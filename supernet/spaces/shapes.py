"""The shapes candidate ops run at in a child network: what the cost tables are made of.

A space reads them from a reference child with forward hooks (``SearchSpace.cost_rows``), so
they are the child's by construction, whatever its layout; ``nas.hardware.costs`` turns them
into per-candidate params, MACs and latencies (``OpShape.key`` keys the latency table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from supernet.genotypes import MBCONV_ZERO, parse_mbconv_op
from supernet.ops import build_op

# Ops that cost nothing in the child (dropped edge, identity layer).
FREE_OPS = ("none", MBCONV_ZERO)

# Per cell type, per α row, per op: the op's shape in every cell (or layer) of that type.
Rows = dict[str, list[list[list["OpShape"]]]]


@dataclass(frozen=True)
class OpShape:
    """One candidate op at one shape: what a latency-table entry is measured on."""

    op: str
    C_in: int
    C_out: int
    stride: int
    H: int
    W: int
    se: bool = False

    @property
    def key(self) -> str:
        """Canonical table key, e.g. ``sep_conv_3x3|16>16|s1|32x32``."""
        se = "|se" if self.se else ""
        return f"{self.op}|{self.C_in}>{self.C_out}|s{self.stride}|{self.H}x{self.W}{se}"

    input_dtype = torch.float32  # images in

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """One input sample's shape: what the op is counted and timed on."""
        return (self.C_in, self.H, self.W)

    @property
    def free(self) -> bool:
        return self.op in FREE_OPS

    def build(self) -> nn.Module:
        """The op as the child network builds it (affine BN)."""
        choice = parse_mbconv_op(self.op) if "_e" in self.op and self.op[0] == "k" else None
        if choice is not None:
            from supernet.superkernel import MBConv

            return MBConv(self.C_in, self.C_out, *choice, self.stride, se=self.se)
        return build_op(self.op, self.C_in, self.C_out, self.stride, affine=True)


@dataclass(frozen=True)
class JointCost:
    """One place of a network whose cost depends on several α rows together (a ``module``
    space's layer sized by a width and a kernel choice, a candidate holding a width): its cost
    entries at every joint choice of those rows, so the cost model prices it exactly, and its
    expectation is the sum over joint choices weighted by the product of the rows'
    probabilities (independent rows).

    Attributes:
        cell: the α cell type of the rows.
        rows: the α rows it depends on, the first the place's own decision.
        entries: per joint choice (one column per row), the shapes whose costs add up.
        reference: the joint choice of the reference architecture.
    """

    cell: str
    rows: tuple[int, ...]
    entries: dict[tuple[int, ...], tuple[Any, ...]]
    reference: tuple[int, ...]


def empty_rows(cell_types: Sequence[str], n_rows: int, n_ops: int) -> Rows:
    return {c: [[[] for _ in range(n_ops)] for _ in range(n_rows)] for c in cell_types}


def example_input(input_shape: Sequence[int], batch: int = 1, device=None) -> torch.Tensor:
    """Zeros of one batch: token ids ``[batch, T]`` (long) for a 1-d input shape (text), else
    float images ``[batch, C, H, W]``."""
    dtype = torch.long if len(input_shape) == 1 else torch.float32
    return torch.zeros(batch, *input_shape, dtype=dtype, device=device)


def run_hooked(
    child: nn.Module,
    input_shape: Sequence[int],
    hooks: Iterable[tuple[nn.Module, Callable[..., Any]]],
) -> None:
    """One eval-mode forward of a zero sample through ``child`` with the forward ``hooks``
    (module, hook) registered, removed afterwards."""
    handles = [m.register_forward_hook(h) for m, h in hooks]
    try:
        was = child.training
        child.eval()
        with torch.no_grad():
            child(example_input(input_shape))
        child.train(was)
    finally:
        for h in handles:
            h.remove()


def add_cell_shapes(
    rows: list[list[list[OpShape]]],
    edges: Sequence[tuple[int, int]],
    ops: Sequence[str],
    shape: Sequence[int],
    reduction: bool,
) -> None:
    """Appends one cell's op shapes to ``rows``: every op on every edge at the cell's width
    ``C`` and resolution; in a reduction cell the edges leaving the cell inputs (nodes 0, 1)
    have stride 2 and every later edge runs at half the resolution."""
    C, H, W = shape
    Hr, Wr = (H + 1) // 2, (W + 1) // 2
    for e, (j, _) in enumerate(edges):
        stride = 2 if reduction and j < 2 else 1
        h, w = (H, W) if j < 2 or not reduction else (Hr, Wr)
        for k, op in enumerate(ops):
            rows[e][k].append(OpShape(op, C, C, stride, h, w))
