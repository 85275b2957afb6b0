"""The NAS-Bench-201 space (Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible
Neural Architecture Search", ICLR 2020).

A cell is a DAG of 4 nodes: node 0 is the cell input and node j (1..3) sums one op applied to
each earlier node, over 6 edges ordered as the benchmark's architecture strings list them:
(0→1), (0→2), (1→2), (0→3), (1→3), (2→3). The cell output is node 3. Five ops in the benchmark's
order: ``none``, ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3``, ``avg_pool_3x3``
(ReLU-Conv-BN convolutions; the pool has no BN). The macro skeleton: a 3x3 conv + BN stem
(C channels), three stages of N cells (C, 2C, 4C channels) joined by residual reduction
blocks (a ResNet basic block: ReLU-Conv3x3-BN stride 2, ReLU-Conv3x3-BN, shortcut 2x2
average pool + 1x1 conv), BN + ReLU, global average pooling and a linear classifier. The
benchmark trains C=16, N=5.

In search, the cell's ops use non-affine BN; by default their BNs normalise with batch
statistics (``track_running_stats=False``, a flag of the benchmark's search scripts): sampling
strategies switch paths every step, so running statistics would mix architectures. A
``search_space.layers`` value is N, the cells per stage.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from supernet import kernels
from supernet.genotypes import GenotypeError, KeptEdge, NB201Genotype
from supernet.grouped_edges import GroupedEdgesCell
from supernet.kernels.op_kernels import TORCH_KERNELS, OpKernels
from supernet.mixed import MixedOp, disable_running_stats, mix_node, node_indices
from supernet.ops import OPS, ReLUConvBN, Zero, build_op
from supernet.spaces.base import (
    SearchSpace,
    check_choice,
    check_fixed,
    check_input_shape,
    check_op_names,
)
from supernet.spaces.shapes import Rows, add_cell_shapes, empty_rows, run_hooked

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def nb201_edges(steps: int = 3) -> tuple[tuple[int, int], ...]:
    """(input, node) per edge, node by node: (0,1), (0,2), (1,2), (0,3), ..."""
    return tuple((i, j) for j in range(1, steps + 1) for i in range(j))


def stage_plan(C: int, N: int) -> list[tuple[int, bool]]:
    """(channels, is_reduction_block) per layer: N cells, block, N cells, block, N cells."""
    return (
        [(C, False)] * N + [(2 * C, True)] + [(2 * C, False)] * N + [(4 * C, True)]
        + [(4 * C, False)] * N
    )  # fmt: skip


def check_nb201_sizes(
    input_shape: Sequence[int], C: int, N: int, owner: str = "search_space"
) -> None:
    """Rejects sizes the network cannot be built with, naming the key (``owner.C``)."""
    check_input_shape(input_shape)
    if C < 1:
        raise ValueError(f"{owner}.C={C}: the initial channels must be at least 1.")
    if N < 1:
        raise ValueError(f"{owner}.layers={N}: N (cells per stage) must be at least 1.")
    if min(input_shape[1:]) < 4:
        raise ValueError(
            f"data.input_shape={list(input_shape)} is too small for the 2 stride-2 residual "
            "blocks of the NAS-Bench-201 network: it needs at least 4x4 pixels."
        )


class ResidualReduction(nn.Module):
    """NAS-Bench-201's residual reduction block (a ResNet basic block with stride 2)."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1)
        # ceil_mode matches the stride-2 conv on odd sizes (identical on even ones).
        self.downsample = nn.Sequential(
            nn.AvgPool2d(2, 2, ceil_mode=True), nn.Conv2d(C_in, C_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def build_nb201_search_op(name: str, C: int, stride: int) -> nn.Module:
    """A candidate op in a NAS-Bench-201 search cell: non-affine BN, no BN after the pool."""
    return build_op(name, C, C, stride, affine=False)


class NB201SearchCell(nn.Module, GroupedEdgesCell):
    """Node j = sum over i < j of the mixed op on edge (i→j) applied to node i."""

    def __init__(
        self,
        ops: Sequence[str],
        C: int,
        steps: int,
        kernel: str,
        partial_channels: int = 1,
        group_edges: bool = True,
        op_kernels: OpKernels = TORCH_KERNELS,
    ):
        super().__init__()
        self.steps = steps
        self.kernel = kernel
        self.edges = nb201_edges(steps)
        self.mixed = nn.ModuleList(
            MixedOp(ops, C, 1, kernel, partial_channels, build=build_nb201_search_op)
            for _ in self.edges
        )
        counts = list(range(1, steps + 1))
        for j, index in enumerate(node_indices(self.mixed, counts, len(ops))):
            self.register_buffer(f"node_index_{j}", index, persistent=False)
        # Before node j, the edges leaving node j - 1 (``grouped_edges``).
        self.init_groups(group_edges, [(j,) for j in range(steps)], op_kernels)

    def forward(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        active: Sequence[Sequence[int] | None] | None = None,
        edge_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        states = [x]
        if edge_weights is not None:
            weights = weights * edge_weights[:, None]
        flat = weights.reshape(-1)
        grouped = self.grouped_now()
        done: dict[int, tuple[list[torch.Tensor], list[int]]] = {}
        first = 0
        for j in range(self.steps):
            if grouped:
                self.run_group(j, states, active, done)
            n_in = j + 1
            states.append(
                mix_node(
                    self.mixed[first : first + n_in],
                    states,
                    first,
                    flat,
                    weights.shape[1],
                    getattr(self, f"node_index_{j}"),
                    active,
                    edge_weights,
                    self.kernel,
                    done,
                )
            )
            first += n_in
        return states[-1]


class _Skeleton(nn.Module):
    """Stem, stages of cells joined by residual blocks, last BN-ReLU, pooling, classifier."""

    def _build(self, input_shape: Sequence[int], num_classes: int, C: int, N: int, make_cell):
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], C, 3, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        self.layers = nn.ModuleList()
        C_prev = C
        for C_curr, reduction in stage_plan(C, N):
            self.layers.append(
                ResidualReduction(C_prev, C_curr) if reduction else make_cell(C_curr)
            )
            C_prev = C_curr
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))


class NB201Supernet(_Skeleton):
    """The NAS-Bench-201 search network ("TinyNetwork" with mixed-op cells)."""

    def __init__(
        self,
        ops: Sequence[str],
        input_shape: Sequence[int],
        num_classes: int,
        C: int = 16,
        N: int = 5,
        steps: int = 3,
        kernel: str = "torch",
        partial_channels: int = 1,
        track_running_stats: bool = False,
        group_edges: bool = True,
        op_kernels: OpKernels = TORCH_KERNELS,
    ):
        super().__init__()
        check_nb201_sizes(input_shape, C, N)

        def make_cell(C_curr: int) -> nn.Module:
            cell = NB201SearchCell(
                ops, C_curr, steps, kernel, partial_channels, group_edges, op_kernels
            )
            return cell if track_running_stats else disable_running_stats(cell)

        self._build(input_shape, num_classes, C, N, make_cell)

    def forward(
        self,
        x: torch.Tensor,
        weights: dict[str, torch.Tensor],
        active: dict[str, Sequence[Sequence[int] | None]] | None = None,
        edge_weights: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Args as ``DartsSupernet.forward``; the one cell type is ``"cell"``."""
        w = weights["cell"]
        act = None if active is None else active["cell"]
        ew = None if edge_weights is None else edge_weights["cell"]
        h = self.stem(x)
        for layer in self.layers:
            h = layer(h) if isinstance(layer, ResidualReduction) else layer(h, w, act, ew)
        return self._head(h)


class NB201ChildCell(nn.Module):
    """A fixed cell: per node, the genotype's ops on its inputs (``none`` edges dropped)."""

    def __init__(self, genotype: NB201Genotype, C: int):
        super().__init__()
        self.inputs = [[i for op, i in node if op != "none"] for node in genotype.nodes]
        self.ops = nn.ModuleList(
            nn.ModuleList(build_op(op, C, C, 1, affine=True) for op, _ in node if op != "none")
            for node in genotype.nodes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for inputs, ops in zip(self.inputs, self.ops):
            if not inputs:  # every input edge is `none`
                states.append(x * 0.0)
                continue
            total = ops[0](states[inputs[0]])
            for i, op in zip(inputs[1:], ops[1:]):
                total = total + op(states[i])
            states.append(total)
        return states[-1]


class NB201ChildNetwork(_Skeleton):
    """The benchmark's network of one architecture. ``forward`` returns ``(logits, None)``.

    The benchmark trains without auxiliary head or drop path; ``drop_path_prob`` is accepted
    (set by the retrain module) and unused.
    """

    def __init__(
        self,
        genotype: NB201Genotype,
        input_shape: Sequence[int],
        num_classes: int,
        C: int = 16,
        layers: int = 5,
        auxiliary: bool = False,
        **_: object,
    ):
        super().__init__()
        check_nb201_sizes(input_shape, C, layers, owner="retrain")
        self.drop_path_prob = 0.0
        self.auxiliary = None
        self._build(input_shape, num_classes, C, layers, lambda c: NB201ChildCell(genotype, c))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        h = self.stem(x)
        for layer in self.layers:
            h = layer(h)
        return self._head(h), None


class NB201Space(SearchSpace):
    """The NAS-Bench-201 space: 5 ops, 6 edges, one cell type (``"cell"``)."""

    name = "nb201"
    cell_types = ("cell",)
    default_selection = "argmax_per_edge"
    genotype_type = NB201Genotype
    layers_unit = "cells per stage"
    child_op_pattern = re.compile(r"^layers\.\d+\.ops\.\d+\.\d+(\.|$)")

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        ops: Sequence[str] = NB201_OPS,
        C: int = 16,
        layers: int = 5,
        steps: int = 3,
        kernel: str = "torch",
        track_running_stats: bool = False,
        reduce_cell: str = "searched",
        group_edges: bool = True,
        batch_norm_kernel: str = "torch",
        depthwise_kernel: str = "torch",
        pointwise_kernel: str = "auto",
        multiplier: int = 1,
        stem_multiplier: int = 1,
        benchmark_file: str | None = None,
    ):
        """``multiplier`` and ``stem_multiplier`` are fixed at 1 (the cell's output is its
        last node, the stem has C channels); ``benchmark_file`` is kept for the benchmark
        lookup (``nas/estimate/benchmark.py``), which reads it (``benchmark_key``)."""
        check_op_names(ops, OPS)
        check_choice("kernel", kernel, kernels.BACKENDS)
        if reduce_cell != "searched":
            raise ValueError(
                f"search_space.reduce_cell={reduce_cell!r} does not apply to NAS-Bench-201, whose "
                "reduction blocks are fixed residual blocks; the only valid choice is 'searched'."
            )
        check_fixed("nb201", multiplier=multiplier, stem_multiplier=stem_multiplier)
        if steps < 1:
            raise ValueError(f"search_space.steps={steps}: need at least 1 node after the input.")
        check_nb201_sizes(input_shape, C, layers)
        self.ops = tuple(ops)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.C, self.layers, self.steps = C, layers, steps
        self.kernel = kernels.resolve_backend(kernel)
        self.track_running_stats = track_running_stats
        self.group_edges = group_edges
        self.op_kernels = OpKernels(batch_norm_kernel, depthwise_kernel, pointwise_kernel)
        self.edges = nb201_edges(steps)
        self.benchmark_file = benchmark_file

    def build_supernet(self, partial_channels: int = 1) -> NB201Supernet:
        return NB201Supernet(
            self.ops,
            self.input_shape,
            self.num_classes,
            self.C,
            self.layers,
            self.steps,
            self.kernel,
            partial_channels,
            self.track_running_stats,
            self.group_edges,
            self.op_kernels,
        )

    def build_child(self, genotype: NB201Genotype, network: str = "cifar", **sizes) -> nn.Module:
        self.validate_genotype(genotype, check_ops=False)
        return NB201ChildNetwork(genotype, self.input_shape, self.num_classes, **sizes)

    def genotype_from_edges(self, kept: Mapping[str, Sequence[KeptEdge]]) -> NB201Genotype:
        """Node j's (op, input) pairs in the order ``kept`` lists them."""
        nodes: dict[int, list[tuple[str, int]]] = {}
        for op, i, j in kept[self.cell_types[0]]:
            nodes.setdefault(j, []).append((op, i))
        return NB201Genotype(nodes=[nodes[j] for j in sorted(nodes)], space=self.name)

    def genotype_count(self) -> int:
        """``len(ops) ** edges`` (NAS-Bench-201: 5^6 = 15,625 cells, isomorphic ones counted
        apart, as the benchmark lists them)."""
        return len(self.ops) ** len(self.edges)

    def all_genotypes(self) -> Iterator[NB201Genotype]:
        """Every cell, one op per edge, edges in α-row order, the last edge varying fastest."""
        for choice in itertools.product(self.ops, repeat=len(self.edges)):
            kept = [(op, i, j) for op, (i, j) in zip(choice, self.edges, strict=True)]
            yield self.genotype_from_edges({self.cell_types[0]: kept})

    def benchmark_key(self, genotype: NB201Genotype) -> str:
        """NAS-Bench-201's architecture string."""
        return str(genotype)

    def cost_rows(self, child: nn.Module, input_shape: Sequence[int]) -> Rows:
        """Every cell's width and resolution: its input (the cells keep both)."""
        captured: list[tuple[int, ...]] = []
        hooks = [
            (layer, lambda m, i, o: captured.append(tuple(i[0].shape[1:])))
            for layer in child.layers
            if isinstance(layer, NB201ChildCell)
        ]
        run_hooked(child, input_shape, hooks)
        rows = empty_rows(self.cell_types, len(self.edges), len(self.ops))
        for shape in captured:
            add_cell_shapes(rows[self.cell_types[0]], self.edges, self.ops, shape, False)
        return rows

    def stub_child(self, child: nn.Module, rows: Rows) -> nn.Module:
        stub = copy.deepcopy(child)
        for layer in stub.layers:
            if isinstance(layer, NB201ChildCell):
                for node in layer.ops:
                    for k in range(len(node)):
                        node[k] = Zero(1, 1)  # same channels: Zero keeps them (x * 0)
        return stub.eval()

    def validate_genotype(self, genotype, check_ops: bool = True) -> None:
        if getattr(genotype, "space", None) != self.name:
            raise GenotypeError(
                f"Genotype is for space {getattr(genotype, 'space', None)!r}, not {self.name!r}."
            )
        if len(genotype.nodes) != self.steps:
            raise GenotypeError(
                f"A {self.name} cell has {self.steps} nodes after the input; the genotype has "
                f"{len(genotype.nodes)}."
            )
        for j, node in enumerate(genotype.nodes, start=1):
            if sorted(i for _, i in node) != list(range(j)):
                raise GenotypeError(f"Node {j} must take exactly one op from each of 0..{j - 1}.")
        bad = [op for node in genotype.nodes for op, _ in node if op not in self.ops]
        if check_ops and bad:
            raise GenotypeError(f"Ops {bad} are not in this space's op list {list(self.ops)}.")
