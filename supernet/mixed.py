"""The mixed op: every candidate op of an edge, mixed by externally supplied weights.

α is never stored here: ``forward(x, weights)`` takes the mixing weights the strategy's sampler
produced, so one supernet serves every strategy (DARTS softmax, Gumbel, Dirichlet, ...).

Partial channel connections (Xu et al., "PC-DARTS: Partial Channel Connections for
Memory-Efficient Architecture Search", ICLR 2020, sec. 3.2) are a build option: with
``partial_channels=K`` only the first ``C/K`` channels go through the candidate ops, the rest
bypass them (max-pooled on stride-2 edges), and the two parts are concatenated and
channel-shuffled with ``K`` groups. Since the shuffle is a fixed permutation, the sum over a
node's edges of shuffled edge outputs is the shuffle of the summed parts; ``mix_node`` uses
this to keep one weighted sum (``kernels.mix``) per node for the op outputs and one for the
bypasses. ``K`` must divide every edge's ``C`` (``check_partial_channels``), as in the PC-DARTS
and DrNAS code, where the shuffle reshapes ``C`` into ``K`` groups: a shuffle over fewer groups
(``gcd(C, K)``) would not be the method's, and at ``gcd = 1`` no shuffle at all.

K can be changed after building (``MixedOp.set_partial_channels``, DrNAS' progressive
learning, Chen et al., ICLR 2021, sec. 3.3: K 6 → 3 in the second stage). The candidates are
resized in place: every parameter keeps its ``nn.Parameter`` object (so an optimizer holding it
stays valid) and its learned values in the leading slice; new entries get the layer's default
initialisation (the Net2Net-style widening of the DrNAS authors).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from supernet import kernels
from supernet.kernels.op_kernels import is_channels_last
from supernet.ops import build_search_op

OpBuilder = Callable[[str, int, int], nn.Module]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: ``[N, g*c, H, W]`` → interleave the ``g`` groups, in the
    memory format of ``x`` (a channels-last input shuffled as NCHW would turn the rest of the
    network NCHW, the slow layout on the CPU)."""
    n, c, h, w = x.shape
    if is_channels_last(x):
        nhwc = x.permute(0, 2, 3, 1).view(n, h, w, groups, c // groups).transpose(3, 4)
        return nhwc.reshape(n, h, w, c).permute(0, 3, 1, 2)
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def disable_running_stats(module: nn.Module) -> nn.Module:
    """Makes every BatchNorm of ``module`` normalise with batch statistics only.

    The same as building it with ``track_running_stats=False``: in a weight-sharing supernet the
    running statistics would average over the different paths the strategy samples.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    return module


class MixedOp(nn.Module):
    """All candidate ops of one edge.

    ``none`` is never computed: its output is zero, so it adds nothing to the sum and its
    weight gets a zero gradient either way.

    Args:
        ops: candidate op names.
        C: channels of the edge's input and output.
        stride: 1, or 2 on reduction edges.
        kernel: weighted-sum backend (``supernet.kernels``).
        partial_channels: PC-DARTS' K; 1 = every channel goes through the ops.
        build: ``(name, C, stride) -> module`` for one candidate as it sits in a search cell.
    """

    def __init__(
        self,
        ops: Sequence[str],
        C: int,
        stride: int,
        kernel: str = "torch",
        partial_channels: int = 1,
        build: OpBuilder = build_search_op,
    ):
        super().__init__()
        _check_k(partial_channels, C)
        self.op_names = tuple(ops)
        self.kernel = kernel
        self.stride = stride
        self.C = C
        self.build = build
        self._set_k(partial_channels)
        self.candidates = nn.ModuleList(
            nn.Identity() if name == "none" else build(name, self.C_op, stride)
            for name in self.op_names
        )
        # PC-DARTS pools the bypassed channels of a reduction edge with a 2x2 max pool;
        # ceil_mode keeps odd sizes in step with the stride-2 ops (equal on even sizes).
        self.bypass_pool = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else None
        computed = [i for i, name in enumerate(self.op_names) if name != "none"]
        self.computed: tuple[int, ...] = tuple(computed)
        # Candidates that begin with a ReLU of the edge input share one (``after_relu``).
        self.relu_first = tuple(hasattr(c, "after_relu") for c in self.candidates)
        self.compile_mode: str | None = None  # set by compile_candidates
        self._compiled_all = None
        self.register_buffer(
            "computed_index", torch.tensor(computed, dtype=torch.long), persistent=False
        )

    def _set_k(self, k: int) -> None:
        self.partial = k
        self.C_op = self.C // k
        self.groups = k  # channel-shuffle groups

    @torch.no_grad()
    def set_partial_channels(self, k: int) -> list[tuple[nn.Parameter, torch.Size]]:
        """Changes K in place; returns ``(parameter, old shape)`` of every resized parameter
        (see ``resize_optimizer_state``)."""
        _check_k(k, self.C)
        old_C_op = self.C_op
        self._set_k(k)
        if self.C_op == old_C_op:
            return []
        resized = []
        for i, name in enumerate(self.op_names):
            if name == "none":
                continue
            old = self.candidates[i]
            ref = next(iter([*old.parameters(), *old.buffers()]), None)
            new = self.build(name, self.C_op, self.stride)
            if ref is not None:
                new = new.to(device=ref.device, dtype=ref.dtype)
            resized += _inherit(old, new)
            self.candidates[i] = new
        return resized

    def candidate_outputs(
        self, x: torch.Tensor, active: Sequence[int] | None = None
    ) -> tuple[list[torch.Tensor], list[int] | torch.Tensor]:
        """Outputs of the candidates to compute and their op indices.

        Args:
            x: the edge input (all channels; the partial slice is taken here).
            active: op indices the strategy keeps (e.g. GDAS' sampled op); ``None`` = all.
        """
        if self.partial > 1:
            x = x[:, : self.C_op]
        if active is None:
            return self.all_outputs(x), self.computed_index
        idx = [int(i) for i in active if self.op_names[int(i)] != "none"]
        return self.outputs(x, idx), idx

    @property
    def runs_compiled(self) -> bool:
        """Whether ``all_outputs`` runs the compiled candidates: compiled, and full-width.
        Partial-channel edges (PC-DARTS) stay eager and grouped (``GroupedEdgesCell``): a
        quarter as wide, they gain nothing from compiling (CPU, batch 16: 2.4-2.8 s per step
        compiled per edge, 2.42 s eager per edge, 1.80 s eager grouped)."""
        return self._compiled_all is not None and self.partial == 1

    def all_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every candidate but ``none`` on ``x``: the static part, compiled by
        ``compile_candidates``."""
        if self.runs_compiled:
            return self._compiled_all(x)
        return self._all_outputs(x)

    def _all_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.outputs(x, self.computed)

    def compile_candidates(self, mode: str = "default") -> None:
        self.compile_mode = mode
        self._compiled_all = torch.compile(self._all_outputs, dynamic=False, mode=mode)

    def __getstate__(self) -> dict:
        # A compiled function does not pickle (DDP spawn, torch.save): rebuilt on unpickling.
        state = dict(self.__dict__)
        state["_compiled_all"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if self.compile_mode is not None:
            self.compile_candidates(self.compile_mode)

    def outputs(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """The candidates ``indices`` on ``x``; those that start with a ReLU share one: one
        ReLU kernel and one saved activation per edge instead of one per candidate."""
        if sum(self.relu_first[i] for i in indices) < 2:
            return [self.candidates[i](x) for i in indices]
        r = torch.relu(x)
        return [
            self.candidates[i].after_relu(r) if self.relu_first[i] else self.candidates[i](x)
            for i in indices
        ]

    def bypass(self, x: torch.Tensor) -> torch.Tensor:
        """The channels that skip the ops under partial channel connections."""
        rest = x[:, self.C_op :]
        return rest if self.bypass_pool is None else self.bypass_pool(rest)

    def zeros(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """A zero output of the edge's shape that still depends on ``weights`` (grad path)."""
        return x[:, :, :: self.stride, :: self.stride] * 0.0 * weights.sum()

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None
    ) -> torch.Tensor:
        """``sum_k weights[k] * op_k(x)`` over the computed candidates; weights: ``[num_ops]``."""
        if active is not None and len(active) == 0:
            return self.zeros(x, weights)
        outputs, idx = self.candidate_outputs(x, active)
        if self.partial == 1:
            if not outputs:  # only `none` is active: a zero output that still depends on weights
                return self.zeros(x, weights)
            return kernels.mix(outputs, weights[idx], self.kernel)
        rest = self.bypass(x)
        if outputs:
            part = kernels.mix(outputs, weights[idx], self.kernel)
        else:
            part = rest.new_zeros(rest.shape[0], self.C_op, *rest.shape[2:]) * weights.sum()
        return channel_shuffle(torch.cat([part, rest], dim=1), self.groups)


def compile_candidates(net: nn.Module, mode: str = "default") -> int:
    """Compiles the candidate ops of every mixed op of ``net`` in place (``all_outputs``, the
    path every op is computed on; sampled subsets stay eager); returns how many mixed ops.

    Every edge of the same width and stride has the same candidates, so Dynamo traces one graph
    per (width, stride) and all such edges share it (5 graphs for the DARTS CIFAR supernet):
    the cold compile takes about as long as for one cell, whatever the depth, while compiling
    the whole supernet as one graph grows with it. The weighted sums stay eager (or Triton).
    """
    edges = [m for m in net.modules() if isinstance(m, MixedOp)]
    for m in edges:
        m.compile_candidates(mode)  # the state dict, names and hooks are unchanged
    # Every edge shares one code object (``_all_outputs``), whose compiled variants Dynamo caps
    # at ``recompile_limit`` (8) before it runs the rest eager: the DARTS CIFAR supernet needs
    # one per edge shape and step kind (weight step, α-only arch step, no_grad, eval).
    shapes = {(m.C_op, m.stride) for m in edges}
    limit = GRAPHS_PER_EDGE_SHAPE * len(shapes)
    if torch._dynamo.config.recompile_limit < limit:
        torch._dynamo.config.recompile_limit = limit
    return len(edges)


# Compiled variants allowed per edge shape: the step kinds above, autocast and headroom.
GRAPHS_PER_EDGE_SHAPE = 8


def _check_k(k: int, C: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"partial_channels (K) must be a positive integer, got {k!r}.")
    if C % k:
        divisors = ", ".join(str(d) for d in range(1, C + 1) if C % d == 0)
        raise ValueError(
            f"Partial channels K={k} does not divide C={C}, the channel count of an edge: "
            f"only C/K channels go through the candidate ops and the channel shuffle splits C "
            f"into K equal groups, so K must divide the channels of every cell (C, 2C, 4C for "
            f"search_space.C={C} in the first cells). Valid K for C={C}: {divisors}; or choose "
            f"a C that K divides (PC-DARTS: K=4 with C=16; DrNAS: K=6 then 4 with C=36)."
        )


def check_partial_channels(net: nn.Module, k: int) -> None:
    """Raises before a run if K cannot be applied to every mixed op of ``net`` (a later
    stage's K, checked up front so that a search does not fail at its stage switch)."""
    for m in net.modules():
        if isinstance(m, MixedOp):
            _check_k(k, m.C)


def _inherit(old: nn.Module, new: nn.Module) -> list[tuple[nn.Parameter, torch.Size]]:
    """Moves ``old``'s parameter objects into ``new`` (same structure, resized): each keeps its
    identity, takes ``new``'s shape and initial values, and the leading slice of its old values.
    Buffers (BN statistics) and module attributes come from ``new``, with old statistics kept
    in the leading slice; BNs that tracked no running statistics still track none."""
    resized = []
    old_params = dict(old.named_parameters())
    for name, p_new in list(new.named_parameters()):
        p_old = old_params[name]
        data = p_new.data.clone()
        _copy_leading(data, p_old.data)
        resized.append((p_old, p_old.shape))
        p_old.data = data
        owner, _, attr = name.rpartition(".")
        setattr(new.get_submodule(owner) if owner else new, attr, p_old)
    old_bns = [m for m in old.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    new_bns = [m for m in new.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for b_old, b_new in zip(old_bns, new_bns):
        if not b_old.track_running_stats:
            disable_running_stats(b_new)
        else:
            for key in ("running_mean", "running_var"):
                _copy_leading(getattr(b_new, key), getattr(b_old, key))
            b_new.num_batches_tracked.copy_(b_old.num_batches_tracked)
    return resized


def _copy_leading(dst: torch.Tensor, src: torch.Tensor) -> None:
    if dst.dim() == 0:
        dst.copy_(src)
        return
    region = tuple(slice(0, min(a, b)) for a, b in zip(dst.shape, src.shape))
    dst[region] = src[region]


def resize_optimizer_state(
    optimizer: torch.optim.Optimizer, resized: Sequence[tuple[nn.Parameter, torch.Size]]
) -> None:
    """Resizes the per-parameter state (momentum buffers, Adam moments) of resized parameters:
    the leading slice is kept, new entries start at zero."""
    for p, old_shape in resized:
        state = optimizer.state.get(p, {})
        for key, value in list(state.items()):
            if torch.is_tensor(value) and value.shape == old_shape and value.shape != p.shape:
                new = torch.zeros(p.shape, dtype=value.dtype, device=value.device)
                _copy_leading(new, value)
                state[key] = new


def mix_node(
    mixed: Sequence[MixedOp],
    inputs: Sequence[torch.Tensor],
    first: int,
    flat_weights: torch.Tensor,
    n_ops: int,
    index: torch.Tensor,
    active: Sequence[Sequence[int] | None] | None = None,
    edge_weights: torch.Tensor | None = None,
    kernel: str = "torch",
    precomputed: Mapping[int, tuple[list[torch.Tensor], Sequence[int]]] | None = None,
) -> torch.Tensor:
    """One node of a search cell: ``sum_e sum_k W[e, k] op_{e,k}(inputs[e])``.

    Args:
        mixed: the mixed ops of the node's incoming edges (edges ``first``, ``first + 1``, ...).
        inputs: their inputs, one per edge.
        first: global index of the node's first edge.
        flat_weights: the cell's ``[edges, ops]`` weights (edge weights already applied), flat.
        n_ops: ops per edge.
        index: flat positions of the node's computed candidates (used when ``active`` is None).
        active: per global edge, the op indices to compute (None = all; ``[]`` = edge unused).
        edge_weights: per global edge factor (PC-DARTS' normalised β); also weights the bypass.
        kernel: weighted-sum backend.
        precomputed: per global edge, ``(outputs, op indices)`` of its computed candidates when
            they were computed with other edges' (``grouped_edges``).
    """
    outputs: list[torch.Tensor] = []
    positions: list[int] = []
    bypass: list[torch.Tensor] = []
    bypass_edges: list[int] = []
    partial = mixed[0].partial
    for j, (op, h) in enumerate(zip(mixed, inputs)):
        e = first + j
        act = None if active is None else active[e]
        if act is not None and len(act) == 0:
            continue  # edge not in the sampled architecture
        if precomputed is not None and e in precomputed:
            outs, idx = precomputed[e]
        else:
            outs, idx = op.candidate_outputs(h, act)
        outputs.extend(outs)
        if active is not None:
            positions.extend(e * n_ops + k for k in (op.computed if act is None else idx))
        if partial > 1:
            bypass.append(op.bypass(h))
            bypass_edges.append(e)
    if not outputs and not bypass:  # every active op of the node is `none`, or no edge is used
        return mixed[0].zeros(inputs[0], flat_weights)
    part = None
    if outputs:
        node_weights = flat_weights[index] if active is None else flat_weights[positions]
        part = kernels.mix(outputs, node_weights, kernel)
    if partial == 1:
        return part
    if edge_weights is None:
        bypass_weights = flat_weights.new_ones(len(bypass))
    elif bypass_edges[-1] - bypass_edges[0] + 1 == len(bypass_edges):  # increasing: contiguous
        # A slice, not a list index: indexing with a list copies it to the device first, which
        # a CUDA graph capture refuses (and costs a host-to-device copy per node eagerly).
        bypass_weights = edge_weights[bypass_edges[0] : bypass_edges[-1] + 1]
    else:
        bypass_weights = edge_weights[bypass_edges]
    rest = kernels.mix(bypass, bypass_weights, kernel)
    if part is None:
        part = rest.new_zeros(rest.shape[0], mixed[0].C_op, *rest.shape[2:])
    return channel_shuffle(torch.cat([part, rest], dim=1), mixed[0].groups)


def node_indices(mixed: Sequence[MixedOp], edges_per_node: Sequence[int], n_ops: int) -> list:
    """Flat positions ``edge * n_ops + op`` of each node's computed candidates."""
    out, first = [], 0
    for count in edges_per_node:
        flat = [(first + j) * n_ops + k for j in range(count) for k in mixed[first + j].computed]
        out.append(torch.tensor(flat, dtype=torch.long))
        first += count
    return out
