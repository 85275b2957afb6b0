"""Edges whose inputs are ready together, computed together (``search_space.group_edges``).

In a DARTS cell the 8 edges leaving the two cell inputs can all run as soon as the cell starts,
the 3 leaving node 2 as soon as node 2 is summed, and so on. For each candidate op, such a group
of E edges is one computation on their inputs stacked along the channel axis: a convolution of
every edge is one grouped convolution (``groups`` times E, the E weights concatenated), batch
norm and ReLU are per channel anyway, and a pool has no weights. One operation is issued where
the per-edge path issues E, with the same arithmetic per channel: the same numbers up to float
rounding of the convolution algorithms (tested), in far fewer operations (a GPU step is bound by
their count, see ``experiments/bench/op_count.py``).

The parameters stay per edge (state dict, optimizers, PC-DARTS' and DrNAS' resizing are
unchanged); each call stacks the group's weights and BN running statistics with a few
concatenations (``_GroupTensors``) and copies the updated statistics back with one
``_foreach_copy_``. Used in training mode, for every candidate (DARTS) or for the sampled ones
(GDAS, pruned DrNAS: per op, the edges that compute it); eval mode, compiled full-width
candidates, op types without a grouped form and ops that only one edge computes take the per-edge
path. Forward hooks on candidate modules see only per-edge calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from supernet.kernels.op_kernels import (
    TORCH_KERNELS,
    OpKernels,
    batch_norm,
    depthwise_conv2d,
    is_channels_last,
    pointwise_conv2d,
)
from supernet.ops import DilConv, FactorizedReduce, Identity, PoolBN, ReLUConvBN, SepConv


class _GroupTensors:
    """The stacked parameters and BN running statistics of one group's grouped ops.

    The weights of the group are concatenated by one ``cat`` per weight shape (each layer's
    stacked weight is a view of it), all running means by one and all running variances by
    one; the statistics the batch norms update in place are copied back to the edges' buffers
    by one ``_foreach_copy_`` (``flush``). A few concatenations per group instead of one per
    layer: a DARTS group has 12 convolutions and 8 batch norms, whose per-layer concatenations
    were a quarter of a GPU step's launches.

    Args:
        grouped: per grouped op, its candidates on the edges that compute it (built alike).
        op_kernels: the backends of the grouped batch norms, depthwise and pointwise convolutions.
    """

    def __init__(self, grouped: Sequence[Sequence[nn.Module]], op_kernels: OpKernels):
        self.op_kernels = op_kernels
        # Parameters by per-edge shape: one cat along the first axis per shape (no flattening,
        # so no view per parameter), then one split into the layers' stacked tensors.
        by_shape: dict[tuple, list[list[torch.Tensor]]] = {}
        where: dict[tuple[int, str], tuple[tuple, int]] = {}
        self.means: list[torch.Tensor] = []  # the edges' buffers, written back by flush
        self.variances: list[torch.Tensor] = []
        self.counters: list[torch.Tensor] = []
        stat_sizes: list[int] = []  # per stacked statistic
        self.stat_index: dict[int, int] = {}
        for candidates in grouped:
            for layer in zip(*(c.modules() for c in candidates)):
                first = layer[0]
                if isinstance(first, (nn.Conv2d, nn.BatchNorm2d)):
                    for name in ("weight", "bias"):
                        tensor = getattr(first, name, None)
                        if tensor is None:
                            continue
                        key = (tuple(tensor.shape), tensor.dtype)
                        layers = by_shape.setdefault(key, [])
                        where[(id(first), name)] = (key, len(layers))
                        layers.append([getattr(m, name) for m in layer])
                if isinstance(first, nn.BatchNorm2d) and _tracks(first):
                    self.stat_index[id(first)] = len(stat_sizes)
                    stat_sizes.append(len(layer) * first.num_features)
                    self.means += [m.running_mean for m in layer]
                    self.variances += [m.running_var for m in layer]
                    self.counters += [m.num_batches_tracked for m in layer]
        stacked = {
            key: torch.cat([t for layer in layers for t in layer]).split(
                [sum(t.shape[0] for t in layer) for layer in layers]
            )
            for key, layers in by_shape.items()
        }
        self.stacked = {at: stacked[key][i] for at, (key, i) in where.items()}
        self.mean_parts: Sequence[torch.Tensor] = ()
        self.var_parts: Sequence[torch.Tensor] = ()
        if stat_sizes:
            self.mean = torch.cat(self.means)
            self.var = torch.cat(self.variances)
            self.mean_parts = self.mean.split(stat_sizes)
            self.var_parts = self.var.split(stat_sizes)

    def param(self, module: nn.Module, name: str) -> torch.Tensor | None:
        """The E edges' ``module.<name>`` stacked along the first axis (a view)."""
        return self.stacked.get((id(module), name))

    def stats(self, bn: nn.BatchNorm2d) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The E edges' running mean and variance, stacked (views the batch norm updates)."""
        i = self.stat_index.get(id(bn))
        return (None, None) if i is None else (self.mean_parts[i], self.var_parts[i])

    def flush(self) -> None:
        """Writes the updated statistics back to the edges' buffers."""
        if self.means:
            sizes = [b.numel() for b in self.means]
            with torch.no_grad():
                sources = [*self.mean.split(sizes), *self.var.split(sizes)]
                torch._foreach_copy_(self.means + self.variances, sources)
                torch._foreach_add_(self.counters, 1)


def _tracks(bn: nn.BatchNorm2d) -> bool:
    return bn.track_running_stats and bn.running_mean is not None


def _conv(convs: Sequence[nn.Conv2d], x: torch.Tensor, state: _GroupTensors) -> torch.Tensor:
    """The convolutions of E edges on their stacked inputs: one convolution, E times the groups."""
    c = convs[0]
    weight, bias = state.param(c, "weight"), state.param(c, "bias")
    if c.groups == c.in_channels == c.out_channels and bias is None:  # depthwise
        backend = state.op_kernels.depthwise
        return depthwise_conv2d(x, weight, c.stride, c.padding, c.dilation, backend)
    groups = c.groups * len(convs)
    if c.kernel_size == (1, 1) and c.padding == (0, 0) and bias is None:
        return pointwise_conv2d(x, weight, c.stride, groups, state.op_kernels.pointwise)
    return F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, groups)


def _batch_norm(
    bns: Sequence[nn.BatchNorm2d], x: torch.Tensor, state: _GroupTensors
) -> torch.Tensor:
    """Training-mode batch norm of E edges on their stacked outputs."""
    b = bns[0]
    rm, rv = state.stats(b)
    weight, bias = state.param(b, "weight"), state.param(b, "bias")
    return batch_norm(x, rm, rv, weight, bias, b.momentum, b.eps, state.op_kernels.batch_norm)


def _dil_conv(ops: Sequence[DilConv], r: torch.Tensor, state: _GroupTensors) -> torch.Tensor:
    """ReLU (already applied: ``r``), depthwise conv, pointwise conv, BN."""
    y = _conv([m[1] for m in ops], r, state)
    y = _conv([m[2] for m in ops], y, state)
    return _batch_norm([m[3] for m in ops], y, state)


def _sep_conv(ops: Sequence[SepConv], r: torch.Tensor, state: _GroupTensors) -> torch.Tensor:
    y = _dil_conv([m[0] for m in ops], r, state)
    return _dil_conv([m[1] for m in ops], torch.relu(y), state)


def _relu_conv_bn(ops: Sequence[ReLUConvBN], r: torch.Tensor, state: _GroupTensors) -> torch.Tensor:
    return _batch_norm([m[2] for m in ops], _conv([m[1] for m in ops], r, state), state)


def _factorized_reduce(
    ops: Sequence[FactorizedReduce], r: torch.Tensor, state: _GroupTensors
) -> torch.Tensor:
    """Two offset stride-2 1x1 convs, each edge's halves side by side, BN (``FactorizedReduce``)."""
    if r.shape[-1] % 2 or r.shape[-2] % 2:
        r = F.pad(r, (0, r.shape[-1] % 2, 0, r.shape[-2] % 2))
    w1, w2 = state.param(ops[0].conv_1, "weight"), state.param(ops[0].conv_2, "weight")
    e = len(ops)
    if is_channels_last(r):
        y = _offset_pair_as_one_conv(r, w1, w2, e)
    else:
        a = _conv([m.conv_1 for m in ops], r, state)
        b = _conv([m.conv_2 for m in ops], r[:, :, 1:, 1:], state)
        n, c, h, w = a.shape
        # [N, E*C/2] twice -> per edge [conv_1 half, conv_2 half]: [N, E, 2, C/2] flattened
        y = torch.stack([a.view(n, e, c // e, h, w), b.view(n, e, c // e, h, w)], dim=2)
        y = y.reshape(n, 2 * c, h, w)
    return _batch_norm([m.bn for m in ops], y, state)


def _offset_pair_as_one_conv(
    r: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, groups: int
) -> torch.Tensor:
    """The two halves of ``groups`` FactorizedReduces as one stride-2 2x2 convolution whose
    kernel is ``w1`` at tap (0, 0) and ``w2`` at tap (1, 1), zero elsewhere: the same sums
    (plus exact zeros), per group ``[conv_1 half, conv_2 half]``. For channels-last inputs,
    where the pair's sliced input and its gradient (a zero-filled tensor and a strided copy)
    cost more than the arithmetic: 16x256x32x32, 8 groups, CPU, forward+backward 58.7 -> 16.3 ms
    (NCHW inputs keep the pair: 36 ms with matrix products against 43 ms this way)."""
    half, c = w1.shape[0] // groups, w1.shape[1]
    at_00 = F.pad(w1.view(groups, half, c, 1, 1), (0, 1, 0, 1))
    at_11 = F.pad(w2.view(groups, half, c, 1, 1), (1, 0, 1, 0))
    kernel = torch.stack([at_00, at_11], dim=1).reshape(2 * groups * half, c, 2, 2)
    return F.conv2d(r, kernel, None, 2, 0, 1, groups)


def _pool_bn(ops: Sequence[PoolBN], x: torch.Tensor, state: _GroupTensors) -> torch.Tensor:
    return _batch_norm([m[1] for m in ops], _pool([m[0] for m in ops], x, state), state)


def _pool(ops: Sequence[nn.Module], x: torch.Tensor, state: _GroupTensors) -> torch.Tensor:
    """No weights: one pool of the stacked inputs (functional, like every grouped form: the
    candidate modules' hooks see only per-edge calls)."""
    p = ops[0]
    if isinstance(p, nn.MaxPool2d):
        return F.max_pool2d(x, p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode)
    return F.avg_pool2d(
        x, p.kernel_size, p.stride, p.padding, p.ceil_mode, p.count_include_pad, p.divisor_override
    )


# Candidate type -> (grouped form, whether it takes the ReLU of the input)
GROUPED: dict[type, tuple[Callable, bool]] = {
    SepConv: (_sep_conv, True),
    DilConv: (_dil_conv, True),
    ReLUConvBN: (_relu_conv_bn, True),
    FactorizedReduce: (_factorized_reduce, True),
    PoolBN: (_pool_bn, False),
    nn.MaxPool2d: (_pool, False),  # NAS-Bench-201's pools have no BN
    nn.AvgPool2d: (_pool, False),
}


def groupable(bns_training: bool, candidates: Sequence[nn.Module]) -> bool:
    """Whether these candidates (one op on E edges, built alike) have a grouped form that
    computes what they compute: training mode, and BNs with an exponential running average (or
    none)."""
    if not bns_training or type(candidates[0]) not in GROUPED:
        return False
    for m in candidates[0].modules():
        if isinstance(m, nn.BatchNorm2d) and m.track_running_stats and m.momentum is None:
            return False  # a cumulative average reads each edge's own counter
    return True


def grouped_outputs(
    mixed: Sequence[nn.Module],
    inputs: Sequence[torch.Tensor],
    active: Sequence[Sequence[int] | None] | None = None,
    op_kernels: OpKernels = TORCH_KERNELS,
) -> list[tuple[list[torch.Tensor], list[int]]]:
    """Per edge, the outputs of the candidates it computes and their op indices, as
    ``mixed[e].candidate_outputs(inputs[e], active[e])`` gives them; for each op, the edges that
    compute it run as one operation.

    Args:
        mixed: the edges' mixed ops, all with the same ops, widths and stride.
        inputs: each edge's input (all channels; the partial-channel slice is taken here).
        active: per edge, the op indices to compute (None: every op but ``none``; ``[]``: the
            edge is unused), as sampling strategies and pruning give them.
    """
    first = mixed[0]
    if first.partial > 1:
        inputs = [x[:, : first.C_op] for x in inputs]
    wanted = [
        list(m.computed) if a is None else [int(i) for i in a if m.op_names[int(i)] != "none"]
        for m, a in zip(mixed, active or [None] * len(mixed))
    ]
    results: list[dict[int, torch.Tensor]] = [{} for _ in mixed]
    plan = []  # (op, edges that compute it, their candidates), for the ops that run grouped
    for k in first.computed:
        users = [i for i, ops in enumerate(wanted) if k in ops]
        if not users:
            continue
        candidates = [mixed[i].candidates[k] for i in users]
        if isinstance(candidates[0], (Identity, nn.Identity)):
            for i in users:
                results[i][k] = inputs[i]
        elif len(users) == 1 or not groupable(first.training, candidates):
            for i, c in zip(users, candidates):
                results[i][k] = c(inputs[i])
        else:
            plan.append((k, users, candidates))
    state = _GroupTensors([candidates for _, _, candidates in plan], op_kernels)
    stacks: dict[tuple[int, ...], list] = {}  # edges -> [stacked inputs, their ReLU]
    for k, users, candidates in plan:
        fn, takes_relu = GROUPED[type(candidates[0])]
        stack = stacks.setdefault(tuple(users), [None, None])
        if stack[0] is None:
            stack[0] = torch.cat([inputs[i] for i in users], dim=1)
        if takes_relu and stack[1] is None:
            stack[1] = torch.relu(stack[0])  # the edges' shared ReLU, once for all of them
        y = fn(candidates, stack[1] if takes_relu else stack[0], state)
        for i, part in zip(users, y.chunk(len(users), dim=1)):
            results[i][k] = part
    state.flush()
    return [([res[k] for k in ops], ops) for res, ops in zip(results, wanted)]


class GroupedEdgesCell:
    """Mixin for a search cell (an ``nn.Module`` with ``edges`` as (input, node) pairs and one
    ``MixedOp`` per edge in ``mixed``) whose edges may run grouped.

    ``ready[t]`` lists the nodes whose outgoing edges run at stage ``t``: the cell computes
    stage ``t``'s group (``run_group``) before it sums the node that needs them.
    """

    def init_groups(
        self, group_edges: bool, ready: Sequence[Sequence[int]], op_kernels: OpKernels
    ) -> None:
        self.group_edges = group_edges
        self.op_kernels = op_kernels
        self.edge_groups = [
            [e for e, (inp, _) in enumerate(self.edges) if inp in sources] for sources in ready
        ]

    def grouped_now(self) -> bool:
        """Edges run grouped in training mode, with eager candidates (compiled ones run per
        edge: ``compile_scope=edge`` compiles each edge's candidates, ``MixedOp.runs_compiled``)."""
        return self.group_edges and self.training and not self.mixed[0].runs_compiled

    def run_group(
        self,
        stage: int,
        states: Sequence[torch.Tensor],
        active: Sequence[Sequence[int] | None] | None,
        done: dict[int, tuple[list[torch.Tensor], list[int]]],
    ) -> None:
        """Adds ``(outputs, op indices)`` of stage ``stage``'s edges to ``done`` (a group of one
        runs alone, through ``mix_node``, as grouping would only add operations)."""
        edges = self.edge_groups[stage]
        if len(edges) > 1:
            mixed = [self.mixed[e] for e in edges]
            inputs = [states[self.edges[e][0]] for e in edges]
            act = None if active is None else [active[e] for e in edges]
            outputs = grouped_outputs(mixed, inputs, act, self.op_kernels)
            done.update(zip(edges, outputs))
