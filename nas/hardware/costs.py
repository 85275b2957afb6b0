"""Per-candidate cost tables and the supernet's expected cost (hardware-aware search).

For every searched α row (a cell edge, an mbconv layer) and every candidate op, the op's
parameters, multiply-adds and latency at the shape it runs at in the child network: the
input width, output width, stride and resolution of that edge in each cell of its type (cell
spaces: a row's cost sums over the cells of its type, whose widths differ per stage), or of
that layer (mbconv). The shapes are read from a reference child network with forward hooks, so
they are the child's by construction, whatever its layout (CIFAR or ImageNet stems).

The network's fixed part (stem, cell preprocessing, fixed reduction cells, feature mix,
classifier) is counted on the same reference child with every searched op excluded; its
latency is measured on that child with every searched op replaced by a free stub
(``supernet.ops.Zero``). Then, for a genotype,

    cost(child) = fixed + Σ_rows cost(row, chosen op)      (exact for params and MACs)

and, under mixing probabilities p (softmax of α per row, differentiable),
``E[cost] = fixed + Σ_rows Σ_ops p(row, op) · cost(row, op)``.

MACs count conv and linear layers as ``nas/hardware/profile.py`` does; params exclude the auxiliary
head. Latencies come from a table measured by ``python train.py stage=latency``
(``nas/hardware/latency.py``), keyed by ``OpShape.key``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from nas.hardware.profile import count_params
from supernet.genotypes import MBCONV_ZERO, parse_mbconv_op
from supernet.ops import Zero, build_op
from supernet.spaces.darts_child import ChildCell

KINDS = ("params", "macs", "latency")
# Ops that cost nothing in the child (dropped edge, identity layer).
FREE_OPS = ("none", MBCONV_ZERO)
# Module names of the searched ops inside each space's child network.
OP_MODULES = {
    "darts": re.compile(r"^cells\.\d+\.ops\.\d+(\.|$)"),
    "nb201": re.compile(r"^layers\.\d+\.ops\.\d+\.\d+(\.|$)"),
    "mbconv": re.compile(r"^layers\.\d+\.block(\.|$)"),
}


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


def module_macs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Multiply-adds per conv / linear module name for one sample (``nas/hardware/profile.py``'s count)."""
    out: dict[str, int] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):

            def hook(mod, inputs, output, name=name) -> None:
                kh, kw = mod.kernel_size
                n = output.numel() // output.shape[0] * (mod.in_channels // mod.groups) * kh * kw
                out[name] = out.get(name, 0) + n

        elif isinstance(m, nn.Linear):

            def hook(mod, inputs, output, name=name) -> None:
                out[name] = out.get(name, 0) + output.numel() // output.shape[0] * mod.in_features

        else:
            continue
        handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return out


def op_cost(shape: OpShape, kind: str) -> float:
    """Params or MACs of one op at its shape (0 for ``none`` / ``zero``)."""
    if shape.free:
        return 0.0
    op = shape.build()
    if kind == "params":
        return float(count_params(op))
    return float(sum(module_macs(op, (shape.C_in, shape.H, shape.W)).values()))


@dataclass(frozen=True)
class Choice:
    """One decision of a genotype: op ``op`` on row ``row`` of cell type ``cell``; ``slot`` is
    its position in the genotype (DARTS: index in the cell's pair list)."""

    cell: str
    row: int
    op: str
    slot: int


def genotype_choices(space, genotype) -> list[Choice]:
    """The (cell type, α row, op) decisions of a genotype of ``space``."""
    if space.name == "mbconv":
        return [Choice("layers", i, op, i) for i, op in enumerate(genotype.layers)]
    if space.name == "nb201":
        out, slot = [], 0
        for j, node in enumerate(genotype.nodes, start=1):
            for op, i in node:
                out.append(Choice("cell", space.edges.index((i, j)), op, slot))
                slot += 1
        return out
    out = []
    for cell in space.cell_types:
        pairs, _ = genotype.cell(cell)
        for k, (op, inp) in enumerate(pairs):
            out.append(Choice(cell, space.edges.index((inp, k // 2 + 2)), op, k))
    return out


def with_choice(space, genotype, choice: Choice, op: str):
    """``genotype`` with ``choice``'s op replaced by ``op``."""
    if space.name == "mbconv":
        layers = list(genotype.layers)
        layers[choice.slot] = op
        return replace(genotype, layers=tuple(layers))
    if space.name == "nb201":
        flat = [list(p) for node in genotype.nodes for p in node]
        flat[choice.slot][0] = op
        nodes, k = [], 0
        for node in genotype.nodes:
            nodes.append(tuple(tuple(p) for p in flat[k : k + len(node)]))
            k += len(node)
        return replace(genotype, nodes=tuple(nodes))
    pairs = list(genotype.cell(choice.cell)[0])
    pairs[choice.slot] = (op, pairs[choice.slot][1])
    return replace(genotype, **{choice.cell: tuple(pairs)})


def reference_genotype(space):
    """A valid genotype of ``space`` (its rule on uniform α): builds the reference child."""
    from nas.strategies.selection import select

    probs = {c: torch.full(space.alpha_shape, 1.0 / len(space.ops)) for c in space.cell_types}
    return select(space.default_selection, probs, space)


class LatencyTableError(ValueError):
    """A latency table that is missing, malformed, for another space or lacks an entry."""


@dataclass
class CostModel:
    """Cost tables of one space at one child size; see the module docstring.

    Attributes:
        space: the space's name.
        ops: op names (α's columns).
        rows: per cell type, per row, per op: the op's shape in each cell of that type.
        fixed_params, fixed_macs: the fixed part's counts.
        fixed_key: the latency-table key of the fixed part.
        stub: the reference child with free stubs in place of the searched ops (timed for the
            fixed part's latency).
        input_shape: [C, H, W] of one sample.
        latency: the loaded latency table's entries (key -> ms), or None.
    """

    space: str
    ops: tuple[str, ...]
    rows: dict[str, list[list[list[OpShape]]]]
    fixed_params: int
    fixed_macs: int
    fixed_key: str
    stub: nn.Module
    input_shape: tuple[int, ...]
    latency: dict[str, float] | None = None
    _tables: dict[str, dict[str, torch.Tensor]] | None = None

    # ---- tables -------------------------------------------------------------------------
    def op_shapes(self) -> list[OpShape]:
        """Every distinct non-free op shape (the latency entries to measure)."""
        seen: dict[str, OpShape] = {}
        for rows in self.rows.values():
            for row in rows:
                for shapes in row:
                    for s in shapes:
                        if not s.free:
                            seen.setdefault(s.key, s)
        return list(seen.values())

    def fixed(self, kind: str) -> float:
        check_kind(kind)
        if kind == "params":
            return float(self.fixed_params)
        if kind == "macs":
            return float(self.fixed_macs)
        return self._latency(self.fixed_key)

    def _latency(self, key: str) -> float:
        if self.latency is None:
            raise LatencyTableError(
                "Latency costs need a latency table: measure one with `python train.py "
                "stage=latency` (same search_space / retrain / data settings) and pass "
                "costs.latency_table=<run dir>/latency_table.json."
            )
        if key not in self.latency:
            raise LatencyTableError(
                f"The latency table has no entry {key!r} (space {self.space}). It was measured "
                "for other shapes: re-run `python train.py stage=latency` with this run's "
                "search_space / retrain / data settings."
            )
        return float(self.latency[key])

    def table(self, kind: str) -> dict[str, torch.Tensor]:
        """Per cell type a float64 ``[rows, ops]`` tensor of cost(row, op)."""
        check_kind(kind)
        if self._tables is None:
            self._tables = {}
        if kind not in self._tables:
            out = {}
            for cell, rows in self.rows.items():
                t = torch.zeros(len(rows), len(self.ops), dtype=torch.float64)
                for r, row in enumerate(rows):
                    for k, shapes in enumerate(row):
                        t[r, k] = sum(self._entry(s, kind) for s in shapes)
                out[cell] = t
            self._tables[kind] = out
        return self._tables[kind]

    def _entry(self, shape: OpShape, kind: str) -> float:
        if shape.free:
            return 0.0
        if kind == "latency":
            return self._latency(shape.key)
        cache = self.__dict__.setdefault("_op_cache", {})
        if (shape.key, kind) not in cache:  # the same shape recurs in every cell of a stage
            cache[shape.key, kind] = op_cost(shape, kind)
        return cache[shape.key, kind]

    def set_latency(self, entries: dict[str, float]) -> None:
        self.latency = dict(entries)
        if self._tables is not None:
            self._tables.pop("latency", None)

    # ---- costs --------------------------------------------------------------------------
    def expected(
        self,
        probs: dict[str, torch.Tensor],
        kind: str,
    ) -> torch.Tensor:
        """``fixed + Σ_rows Σ_ops p · cost``; differentiable in ``probs``."""
        total = None
        for cell, t in self.table(kind).items():
            p = probs[cell]
            term = (p * t.to(device=p.device, dtype=p.dtype)).sum()
            total = term if total is None else total + term
        return total + self.fixed(kind)

    def genotype_cost(self, space, genotype, kind: str) -> float:
        """The child network's cost: fixed + the chosen ops' entries."""
        tables = self.table(kind)
        total = self.fixed(kind)
        for c in genotype_choices(space, genotype):
            if c.op not in self.ops:
                raise ValueError(
                    f"op {c.op!r} of the genotype is not in the space's list {list(self.ops)}: "
                    "its cost is not tabled."
                )
            total += float(tables[c.cell][c.row, self.ops.index(c.op)])
        return total


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"Unknown cost kind {kind!r}; valid: {', '.join(KINDS)}.")


def row_probabilities(
    alphas: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """softmax(α) per row, pruned ops (``op_masks`` 0) excluded; differentiable in α."""
    out = {}
    for cell, a in alphas.items():
        m = None if not masks else masks.get(cell)
        if m is not None:
            a = a.masked_fill(~m.to(device=a.device, dtype=torch.bool), float("-inf"))
        out[cell] = torch.softmax(a, dim=-1)
    return out


# ---- building the tables from a reference child -----------------------------------------
def _cell_rows(space, child: nn.Module, input_shape) -> dict[str, list[list[list[OpShape]]]]:
    """Per cell type, per row, per op: the op's shape in every cell of the type (hooks)."""
    rows = {c: [[[] for _ in space.ops] for _ in space.edges] for c in space.cell_types}
    captured: list[tuple[str, Any, tuple[int, ...]]] = []
    handles = []
    se = bool(getattr(space, "se", False))
    if space.name == "darts":
        for cell in child.cells:
            if not isinstance(cell, ChildCell):
                continue  # a fixed reduction cell: part of the fixed network
            kind = "reduce" if cell.reduction else "normal"
            if kind not in space.cell_types:
                continue
            handles.append(
                cell.preprocess1.register_forward_hook(
                    lambda m, i, o, kind=kind, cell=cell: captured.append(
                        (kind, cell, tuple(o.shape[1:]))
                    )
                )
            )
    elif space.name == "nb201":
        for layer in child.layers:
            if hasattr(layer, "ops"):
                handles.append(
                    layer.register_forward_hook(
                        lambda m, i, o: captured.append(("cell", m, tuple(i[0].shape[1:])))
                    )
                )
    else:
        for i, layer in enumerate(child.layers):
            handles.append(
                layer.register_forward_hook(
                    lambda m, inp, o, i=i: captured.append(
                        ("layers", i, (*inp[0].shape[1:], o.shape[1], o.shape[2]))
                    )
                )
            )
    try:
        was = child.training
        child.eval()
        with torch.no_grad():
            child(torch.zeros(1, *input_shape))
        child.train(was)
    finally:
        for h in handles:
            h.remove()
    for kind, cell, shape in captured:
        if space.name == "mbconv":
            C_in, H, W, C_out, H_out = shape
            stride = 2 if H_out < H else 1
            for k, op in enumerate(space.ops):
                if op == MBCONV_ZERO and cell in space.fixed_layers:
                    op = space.ops[0]  # zero there runs the first candidate (mbconv docstring)
                rows[kind][cell][k].append(OpShape(op, C_in, C_out, stride, H, W, se))
            continue
        C, H, W = shape
        reduction = bool(getattr(cell, "reduction", False))
        Hr, Wr = (H + 1) // 2, (W + 1) // 2
        for e, (j, _) in enumerate(space.edges):
            stride = 2 if reduction and j < 2 else 1
            h, w = (H, W) if j < 2 or not reduction else (Hr, Wr)
            for k, op in enumerate(space.ops):
                rows[kind][e][k].append(OpShape(op, C, C, stride, h, w))
    return rows


def _stub(space, child: nn.Module, rows) -> nn.Module:
    """The child with every searched op replaced by a free ``Zero`` of its output shape."""
    import copy

    stub = copy.deepcopy(child)
    if space.name == "darts":
        for cell in stub.cells:
            if isinstance(cell, ChildCell):
                for k, inp in enumerate(cell.indices):
                    C = cell.preprocess1[-1].num_features
                    cell.ops[k] = Zero(C, 2 if cell.reduction and inp < 2 else 1)
    elif space.name == "nb201":
        for layer in stub.layers:
            if hasattr(layer, "ops"):
                for node in layer.ops:
                    for k in range(len(node)):
                        node[k] = Zero(1, 1)  # same channels: Zero keeps them (x * 0)
    else:
        for i, layer in enumerate(stub.layers):
            if layer.block is not None:
                shape = rows["layers"][i][0][0]  # the layer's first candidate
                layer.block = Zero(shape.C_out, shape.stride)
    return stub.eval()


def _fixed_counts(space, child: nn.Module, input_shape) -> tuple[int, int]:
    pattern = OP_MODULES[space.name]
    params = sum(
        p.numel()
        for n, p in child.named_parameters()
        if not n.startswith("auxiliary") and not pattern.match(n)
    )
    macs = sum(v for n, v in module_macs(child, input_shape).items() if not pattern.match(n))
    return params, macs


def build_cost_model(
    space, build_child: Callable[[Any], nn.Module], input_shape: Sequence[int] | None = None
) -> CostModel:
    """The cost tables of ``space`` for the child networks ``build_child(genotype)`` builds."""
    if space.name not in OP_MODULES:
        raise ValueError(
            f"No cost model for search space {space.name!r}; spaces with one: "
            f"{', '.join(OP_MODULES)}."
        )
    input_shape = tuple(input_shape or space.input_shape)
    child = build_child(reference_genotype(space))
    rows = _cell_rows(space, child, input_shape)
    fixed_params, fixed_macs = _fixed_counts(space, child, input_shape)
    stub = _stub(space, child, rows)
    digest = hashlib.sha1(repr(stub).encode()).hexdigest()[:12]
    fixed_key = f"fixed|{space.name}|{'x'.join(map(str, input_shape))}|{digest}"
    return CostModel(
        space.name,
        tuple(space.ops),
        rows,
        fixed_params,
        fixed_macs,
        fixed_key,
        stub,
        input_shape,
    )


def space_cost_model(space) -> CostModel:
    """Cost tables of the child at the space's own sizes (the network the supernet searches)."""
    return build_cost_model(
        space, lambda g: space.build_child(g, C=space.C, layers=space.layers, auxiliary=False)
    )


def config_cost_model(cfg, space) -> CostModel:
    """Cost tables of the child the run retrains (``retrain`` C / layers / network)."""
    from nas.run import builders

    return build_cost_model(
        space, lambda g: builders.child_network(cfg, space, g), list(cfg.data.input_shape)
    )
