"""NAS-Bench-201's search network written as a plain ``nn.Module`` with ``LayerChoice`` edges.

The built-in space (``search_space=nb201``, ``supernet/spaces/nb201.py``) rebuilt with the choice
primitives of ``supernet.choices``::

    python train.py search_space=module search_space.model=examples.nb201_module.NB201Module \\
        search_space.C=8 search_space.layers=1

The network is the built-in's, module for module and in the same construction order (so the
same torch seed gives the same initial weights): a 3x3 conv + BN stem, three stages of
``layers`` cells (C, 2C, 4C channels) joined by residual reduction blocks, BN + ReLU, global
average pooling and a linear classifier. A cell has 4 nodes; node j sums one ``LayerChoice`` per
earlier node i (edge i→j) among the 5 ops in the benchmark's order, built as the built-in search
cell builds them (non-affine BN, no BN after the pool, batch statistics only). Every cell's edge
i→j has the label ``edge_<j>_<i>`` (node j's input i, as the benchmark's architecture string
``|op~i|`` in node j's group), so all cells share one α row per edge, as the built-in's do; the
rows come in the built-in's edge order (0→1, 0→2, 1→2, 0→3, 1→3, 2→3), so α tensors line up
row for row and column for column.

The fixed model of a genotype retrained from scratch is the benchmark's network of that cell:
each edge's chosen op is rebuilt as ``NB201ChildNetwork`` builds it, with affine BN that tracks
running statistics (``NB201Edge.fixed``), so it has the built-in child's parameters; with the
supernet's weights (``retrain.inherit=true``) the chosen ops are the supernet's own. What differs
from the built-in is the arithmetic's order only: the built-in sums a node's weighted candidate
outputs in one accumulation and runs the edges leaving a node as grouped ops; here each edge's
``LayerChoice`` sums its candidates and the node sums the edges (``experiments/own_model``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from supernet.choices import LayerChoice
from supernet.choices.base import Assignment
from supernet.mixed import disable_running_stats
from supernet.ops import build_op
from supernet.spaces.nb201 import (
    NB201_OPS,
    ResidualReduction,
    build_nb201_search_op,
    check_nb201_sizes,
    nb201_edges,
    stage_plan,
)


def edge_label(i: int, j: int) -> str:
    """The decision of edge i→j (node j's input i), shared by every cell."""
    return f"edge_{j}_{i}"


class NB201Edge(LayerChoice):
    """One cell edge: the candidate ops as a search cell builds them.

    Fixed for retraining from scratch (``inherit=False``), the chosen op is built as the
    benchmark's child network has it (affine BN that tracks running statistics); fixed with the
    supernet's weights (``inherit=True``, ``retrain.inherit``), it is the supernet's own op, so
    the inherited model computes what the supernet computed at that choice."""

    def __init__(self, C: int, ops: Sequence[str], label: str):
        super().__init__({name: build_nb201_search_op(name, C, 1) for name in ops}, label=label)
        self.C = C

    def fixed(self, assignment: Assignment, inherit: bool) -> nn.Module:
        searched = super().fixed(assignment, inherit)
        if inherit:
            return searched
        name = list(self.candidates)[assignment[self.decision.label]]
        ref = next(iter(searched.parameters()), None)
        op = build_op(name, self.C, self.C, 1, affine=True)
        return op if ref is None else op.to(ref.device)


class NB201Cell(nn.Module):
    """Node j = the sum over i < j of edge i→j's choice applied to node i; the output is the
    last node."""

    def __init__(self, C: int, ops: Sequence[str] = NB201_OPS, steps: int = 3):
        super().__init__()
        self.steps = steps
        self.edges = nb201_edges(steps)
        self.mixed = nn.ModuleList(NB201Edge(C, ops, edge_label(i, j)) for i, j in self.edges)
        disable_running_stats(self)  # search cells normalise with batch statistics

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        e = 0
        for j in range(1, self.steps + 1):
            total = self.mixed[e](states[0])
            for i in range(1, j):
                total = total + self.mixed[e + i](states[i])
            states.append(total)
            e += j
        return states[-1]


class NB201Module(nn.Module):
    """NAS-Bench-201's search network ("TinyNetwork" with searched cells); ``layers`` is N, the
    cells per stage (the benchmark: C=16, N=5)."""

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (3, 32, 32),
        C: int = 16,
        layers: int = 5,
        ops: Sequence[str] = NB201_OPS,
        steps: int = 3,
    ):
        super().__init__()
        check_nb201_sizes(input_shape, C, layers)
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], C, 3, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        self.layers = nn.ModuleList()
        C_prev = C
        for C_curr, reduction in stage_plan(C, layers):
            self.layers.append(
                ResidualReduction(C_prev, C_curr) if reduction else NB201Cell(C_curr, ops, steps)
            )
            C_prev = C_curr
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for layer in self.layers:
            h = layer(h)
        return self.classifier(self.global_pooling(self.lastact(h)).flatten(1))
