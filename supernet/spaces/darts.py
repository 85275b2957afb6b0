"""The DARTS CNN search space (Liu et al., ICLR 2019), CIFAR variant.

Cells have two inputs (the outputs of the two previous cells, nodes 0 and 1) and ``steps``
intermediate nodes; the cell output is the concatenation of the intermediate nodes. The
``sum_{i<steps} (2+i)`` edges (14 for 4 steps) are ordered node by node: node 2's inputs 0, 1;
node 3's inputs 0, 1, 2; and so on. Reduction cells sit at 1/3 and 2/3 of the depth and use
stride 2 on the edges leaving the cell inputs, unless ``reduce_cell`` names a hand-designed
reduction cell (``supernet.fixed_cells``, e.g. GDAS' ``gdas_frc``): then only the normal cell
has α and the reduction cells are that fixed cell.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from supernet import kernels
from supernet.fixed_cells import REDUCE_CELL_CHOICES, build_fixed_reduction_cell
from supernet.genotypes import CELL_TYPES, Genotype, GenotypeError, KeptEdge
from supernet.grouped_edges import GroupedEdgesCell
from supernet.kernels.op_kernels import TORCH_KERNELS, OpKernels
from supernet.mixed import MixedOp, disable_running_stats, mix_node, node_indices
from supernet.ops import (
    OPS,
    ReLUConvBN,
    Zero,
    build_search_op,
    build_search_op_bare_pools,
    preprocess_previous,
)
from supernet.spaces.base import (
    CIFAR_NETWORK_MAX_SIDE,
    SearchSpace,
    check_choice,
    check_op_names,
    check_sizes,
    reduction_layers,
)
from supernet.spaces.darts_child import ChildCell, DartsChildNetwork
from supernet.spaces.darts_imagenet import DartsImageNetNetwork
from supernet.spaces.shapes import Rows, add_cell_shapes, empty_rows, run_hooked

DARTS_OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


def cell_edges(steps: int) -> tuple[tuple[int, int], ...]:
    """(input, node) per edge, node by node."""
    return tuple((j, 2 + i) for i in range(steps) for j in range(2 + i))


class SearchCell(nn.Module, GroupedEdgesCell):
    """A cell of the supernet: every candidate op on every edge."""

    def __init__(
        self,
        ops: Sequence[str],
        steps: int,
        multiplier: int,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        kernel: str,
        partial_channels: int = 1,
        group_edges: bool = True,
        op_kernels: OpKernels = TORCH_KERNELS,
        pool_bn: bool = True,
    ):
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        self.kernel = kernel
        self.preprocess0 = preprocess_previous(C_pp, C, reduction_prev, affine=False)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        self.edges = cell_edges(steps)
        build = build_search_op if pool_bn else build_search_op_bare_pools
        self.mixed = nn.ModuleList(
            MixedOp(ops, C, 2 if reduction and inp < 2 else 1, kernel, partial_channels, build)
            for inp, _ in self.edges
        )
        # Flat positions (edge * n_ops + op) of the computed candidates of each node, so a node's
        # weights are one gather from the flattened [edges, ops] weight matrix.
        counts = [2 + i for i in range(steps)]
        for i, index in enumerate(node_indices(self.mixed, counts, len(ops))):
            self.register_buffer(f"node_index_{i}", index, persistent=False)
        # Edges whose inputs are ready together: those leaving the cell inputs, then those
        # leaving node 2, node 3, ... (``grouped_edges``).
        ready = [(0, 1), *((2 + i,) for i in range(steps - 1))]
        self.init_groups(group_edges, ready, op_kernels)

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: torch.Tensor,
        active: Sequence[Sequence[int] | None] | None = None,
        edge_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args: weights ``[edges, ops]``; active: per edge, the op indices to compute or None
        (``[]``: the edge is not used); edge_weights: optional ``[edges]`` factors (PC-DARTS β)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        if edge_weights is not None:
            weights = weights * edge_weights[:, None]
        flat_weights = weights.reshape(-1)
        n_ops = weights.shape[1]
        grouped = self.grouped_now()
        done: dict[int, tuple[list[torch.Tensor], list[int]]] = {}
        first = 0
        for i in range(self.steps):
            if grouped:
                self.run_group(i, states, active, done)
            n_in = 2 + i
            states.append(
                mix_node(
                    self.mixed[first : first + n_in],
                    states,
                    first,
                    flat_weights,
                    n_ops,
                    getattr(self, f"node_index_{i}"),
                    active,
                    edge_weights,
                    self.kernel,
                    done,
                )
            )
            first += n_in
        return torch.cat(states[-self.multiplier :], dim=1)


class DartsSupernet(nn.Module):
    """The DARTS search network: stem, ``layers`` search cells, global pooling, classifier."""

    def __init__(
        self,
        ops: Sequence[str],
        input_shape: Sequence[int],
        num_classes: int,
        C: int = 16,
        layers: int = 8,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        kernel: str = "torch",
        partial_channels: int = 1,
        reduce_cell: str = "searched",
        group_edges: bool = True,
        op_kernels: OpKernels = TORCH_KERNELS,
        pool_bn: bool = True,
    ):
        super().__init__()
        check_sizes(input_shape, C, layers)
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        C_pp, C_p, C_curr = C_curr, C_curr, C
        reductions = reduction_layers(layers)
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            if reduction and reduce_cell != "searched":
                cell = build_fixed_reduction_cell(
                    reduce_cell, C_pp, C_p, C_curr, reduction_prev, affine=False
                )
            else:
                cell = SearchCell(
                    ops,
                    steps,
                    multiplier,
                    C_pp,
                    C_p,
                    C_curr,
                    reduction,
                    reduction_prev,
                    kernel,
                    partial_channels,
                    group_edges,
                    op_kernels,
                    pool_bn,
                )
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(
        self,
        x: torch.Tensor,
        weights: dict[str, torch.Tensor],
        active: dict[str, Sequence[Sequence[int] | None]] | None = None,
        edge_weights: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Args: weights: per cell type, ``[edges, ops]`` mixing weights; active: optional per
        cell type and edge, the op indices to compute (sampling strategies); edge_weights:
        optional per cell type ``[edges]`` factors (PC-DARTS' edge normalization)."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            if not isinstance(cell, SearchCell):  # a fixed reduction cell: nothing to mix
                s0, s1 = s1, cell(s0, s1)
                continue
            kind = "reduce" if cell.reduction else "normal"
            act = None if active is None else active[kind]
            ew = None if edge_weights is None else edge_weights[kind]
            s0, s1 = s1, cell(s0, s1, weights[kind], act, ew)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))


class DartsSpace(SearchSpace):
    """The DARTS CNN space: 8 ops, 14 edges per cell, normal and reduction cells (only normal
    ones are searched with a fixed ``reduce_cell``)."""

    name = "darts"
    cell_types = ("normal", "reduce")
    default_selection = "darts_top2"
    genotype_type = Genotype
    # cifar: DARTS' NetworkCIFAR; imagenet: its NetworkImageNet (three stride-2 stems, 224x224).
    child_networks = ("cifar", "imagenet")
    child_op_pattern = re.compile(r"^cells\.\d+\.ops\.\d+(\.|$)")

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        ops: Sequence[str] = DARTS_OPS,
        C: int = 16,
        layers: int = 8,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        kernel: str = "torch",
        track_running_stats: bool = True,
        reduce_cell: str = "searched",
        group_edges: bool = True,
        batch_norm_kernel: str = "torch",
        depthwise_kernel: str = "torch",
        pointwise_kernel: str = "auto",
        pool_bn: bool = True,
    ):
        check_op_names(ops, OPS)
        check_choice("reduce_cell", reduce_cell, REDUCE_CELL_CHOICES)
        check_choice("kernel", kernel, kernels.BACKENDS)
        self.reduce_cell = reduce_cell
        if reduce_cell != "searched":
            self.cell_types = ("normal",)
        if "none" in ops and list(ops).index("none") != 0:
            raise ValueError(
                f"search_space.ops={list(ops)}: 'none' must be the first op of the list."
            )
        if steps < 1 or not 1 <= multiplier <= steps:
            raise ValueError(
                f"search_space.steps={steps}, search_space.multiplier={multiplier}: need "
                "steps >= 1 and 1 <= multiplier <= steps."
            )
        check_sizes(input_shape, C, layers)
        self.ops = tuple(ops)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.C, self.layers, self.steps = C, layers, steps
        self.multiplier, self.stem_multiplier = multiplier, stem_multiplier
        self.kernel = kernels.resolve_backend(kernel)
        self.track_running_stats = track_running_stats
        self.group_edges = group_edges
        self.pool_bn = pool_bn
        self.op_kernels = OpKernels(batch_norm_kernel, depthwise_kernel, pointwise_kernel)
        self.edges = cell_edges(steps)

    def build_supernet(self, partial_channels: int = 1) -> DartsSupernet:
        net = DartsSupernet(
            self.ops,
            self.input_shape,
            self.num_classes,
            self.C,
            self.layers,
            self.steps,
            self.multiplier,
            self.stem_multiplier,
            self.kernel,
            partial_channels,
            self.reduce_cell,
            self.group_edges,
            self.op_kernels,
            self.pool_bn,
        )
        if not self.track_running_stats:
            for cell in net.cells:
                disable_running_stats(cell)
        return net

    def sample_node(self, n_inputs: int, generator: torch.Generator) -> list[int]:
        """Two distinct inputs, each with a uniformly drawn op other than ``none`` (the
        DARTS cell's discrete form; Li & Talwalkar 2019 sample the DARTS space this way)."""
        real = [i for i, op in enumerate(self.ops) if op != "none"]
        choice = [-1] * n_inputs
        for e in torch.randperm(n_inputs, generator=generator)[:2].tolist():
            choice[e] = real[int(torch.randint(len(real), (1,), generator=generator))]
        return choice

    def build_child(self, genotype: Genotype, network: str = "cifar", **sizes) -> nn.Module:
        """NetworkCIFAR (``network="cifar"``) or NetworkImageNet (``"imagenet"``) of the
        genotype; ``sizes``: C, layers, auxiliary."""
        self.validate_genotype(genotype, check_ops=False)
        if network == "imagenet":
            return DartsImageNetNetwork(genotype, self.input_shape, self.num_classes, **sizes)
        return DartsChildNetwork(genotype, self.input_shape, self.num_classes, **sizes)

    def validate_genotype(self, genotype: Genotype, check_ops: bool = True) -> None:
        if genotype.space != self.name:
            raise GenotypeError(f"Genotype is for space {genotype.space!r}, not {self.name!r}.")
        for cell in CELL_TYPES:
            pairs, _ = genotype.cell(cell)
            bad = [op for op, _ in pairs if check_ops and op not in self.ops]
            if bad:
                raise GenotypeError(
                    f"{cell} cell uses ops {bad} that are not in this space's op list {list(self.ops)}."
                )

    def genotype_from_edges(self, kept: Mapping[str, Sequence[KeptEdge]]) -> Genotype:
        """Two (op, input) pairs per node, node by node; the concatenated nodes are the last
        ``multiplier``; with a fixed ``reduce_cell`` only the normal cell is kept."""
        concat = list(range(2 + self.steps - self.multiplier, 2 + self.steps))
        fixed = self.reduce_cell != "searched"
        pairs = {cell: [(op, i) for op, i, _ in edges] for cell, edges in kept.items()}
        return Genotype(
            normal=pairs["normal"],
            normal_concat=concat,
            reduce=[] if fixed else pairs["reduce"],
            reduce_concat=[] if fixed else concat,
            space=self.name,
            reduce_cell=self.reduce_cell,
        )

    def selectable_ops(self, row: int) -> tuple[int, ...]:
        """Every op but ``none`` (DARTS' rule never keeps it)."""
        return tuple(k for k, op in enumerate(self.ops) if op != "none")

    def reference_genotype(self) -> Genotype:
        """DARTS' rule on uniform α: per node the inputs 0 and 1 (the first edges win ties),
        each with the first op other than ``none``."""
        real = [op for op in self.ops if op != "none"]
        if not real:
            raise ValueError("The DARTS rule needs at least one op other than 'none'.")
        nodes = sorted({j for _, j in self.edges})
        kept = [(real[0], i, j) for j in nodes for i in (0, 1)]
        return self.genotype_from_edges({cell: kept for cell in self.cell_types})

    def child_input_error(self, network: str, side: int, data: str, recipe: str) -> str | None:
        if network == "cifar" and side > CIFAR_NETWORK_MAX_SIDE:
            return (
                f"retrain={recipe} builds a CIFAR-style network (retrain.network=cifar, one "
                f"stride-1 stem for 32x32 images), but data={data} has {side}x{side} images. "
                "Use the ImageNet recipe (retrain=darts_imagenet: DARTS' NetworkImageNet, C=48, "
                "14 cells, three stride-2 stems) or set retrain.network=imagenet."
            )
        return None

    def cost_rows(self, child: nn.Module, input_shape: Sequence[int]) -> Rows:
        """Every searched cell's width and resolution: the output of its ``preprocess1``."""
        captured: list[tuple[str, bool, tuple[int, ...]]] = []
        hooks = []
        for cell in child.cells:
            if not isinstance(cell, ChildCell):
                continue  # a fixed reduction cell: part of the fixed network
            kind = "reduce" if cell.reduction else "normal"
            if kind not in self.cell_types:
                continue

            def hook(m, i, o, kind=kind, reduction=cell.reduction) -> None:
                captured.append((kind, reduction, tuple(o.shape[1:])))

            hooks.append((cell.preprocess1, hook))
        run_hooked(child, input_shape, hooks)
        rows = empty_rows(self.cell_types, len(self.edges), len(self.ops))
        for kind, reduction, shape in captured:
            add_cell_shapes(rows[kind], self.edges, self.ops, shape, reduction)
        return rows

    def stub_child(self, child: nn.Module, rows: Rows) -> nn.Module:
        stub = copy.deepcopy(child)
        for cell in stub.cells:
            if isinstance(cell, ChildCell):
                for k, inp in enumerate(cell.indices):
                    C = cell.preprocess1[-1].num_features
                    cell.ops[k] = Zero(C, 2 if cell.reduction and inp < 2 else 1)
        return stub.eval()
