"""Per-candidate cost tables and the supernet's expected cost (hardware-aware search).

For every searched α row (a cell edge, an mbconv layer) and every candidate op, the op's
parameters, multiply-adds and latency at the shape it runs at in the child network: the
input width, output width, stride and resolution of that edge in each cell of its type (cell
spaces: a row's cost sums over the cells of its type, whose widths differ per stage), or of
that layer (mbconv). The space reads the shapes from a reference child network with forward
hooks (``SearchSpace.cost_rows``), so they are the child's by construction, whatever its layout
(CIFAR or ImageNet stems).

The network's fixed part (stem, cell preprocessing, fixed reduction cells, feature mix,
classifier) is counted on the same reference child with every searched op excluded; its
latency is measured on that child with every searched op replaced by a free stub
(``supernet.ops.Zero``, ``SearchSpace.stub_child``). Then, for a genotype,

    cost(child) = fixed + Σ_rows cost(row, chosen op)      (exact for params and MACs)

and, under mixing probabilities p (softmax of α per row, differentiable),
``E[cost] = fixed + Σ_rows Σ_ops p(row, op) · cost(row, op)``.

MACs are ``nas/hardware/profile.py``'s count (conv and linear layers); params exclude the
auxiliary head. Latencies come from a table measured by ``python train.py stage=latency``
(``nas/hardware/latency.py``), keyed by ``OpShape.key``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nas.hardware.profile import count_macs, count_params, module_macs
from supernet.spaces import SPACES
from supernet.spaces.shapes import FREE_OPS, JointCost, OpShape, example_input

__all__ = [
    "FREE_OPS",
    "KINDS",
    "Choice",
    "CostModel",
    "LatencyTableError",
    "OpShape",
    "build_cost_model",
    "genotype_choices",
    "op_cost",
    "row_probabilities",
    "space_cost_model",
    "with_choice",
]

KINDS = ("params", "macs", "latency")


def op_cost(shape: OpShape, kind: str) -> float:
    """Params or MACs of one op at its shape (0 for ``none`` / ``zero``)."""
    if shape.free:
        return 0.0
    op = shape.build()
    if kind == "params":
        return float(count_params(op))
    return float(count_macs(op, shape.sample_shape, dtype=shape.input_dtype))


@dataclass(frozen=True)
class Choice:
    """One decision of a genotype: op ``op`` on row ``row`` of cell type ``cell``; ``slot`` is
    its position in the genotype (DARTS: index in the cell's pair list)."""

    cell: str
    row: int
    op: str
    slot: int


def genotype_choices(space, genotype) -> list[Choice]:
    """The (cell type, α row, op) decisions of a genotype of ``space``: its kept edges."""
    return [
        Choice(cell, space.edges.index((i, j)), op, slot)
        for cell, kept in genotype.kept_edges().items()
        for slot, (op, i, j) in enumerate(kept)
    ]


def with_choice(space, genotype, choice: Choice, op: str):
    """``genotype`` with ``choice``'s op replaced by ``op``."""
    return genotype.with_op(choice.cell, choice.slot, op)


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
    # Places priced per joint choice of several rows (``SearchSpace.cost_places``).
    joint: list[JointCost] = field(default_factory=list)

    # ---- tables -------------------------------------------------------------------------
    def op_shapes(self) -> list[OpShape]:
        """Every distinct non-free op shape (the latency entries to measure)."""
        seen: dict[str, OpShape] = {}
        groups = [shapes for rows in self.rows.values() for row in rows for shapes in row]
        groups += [shapes for place in self.joint for shapes in place.entries.values()]
        for shapes in groups:
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
        """Per cell type a float64 ``[rows, ops]`` tensor of cost(row, op). With joint places
        (``joint``) it adds their first-order terms around the reference (a place's cost at
        the row's choice, the other rows at the reference; for a further row the change from
        the reference): exact per row where rows share no place. ``expected`` and
        ``genotype_cost`` price joint places exactly; the table ranks one row's choices (the
        hard constraint's downgrades)."""
        check_kind(kind)
        if self._tables is None:
            self._tables = {}
        if kind not in self._tables:
            out = self._linear(kind)
            for place in self.joint:
                costs = self._place_costs(place, kind)
                base = costs[place.reference]
                for i, r in enumerate(place.rows):
                    for cols, cost in costs.items():
                        others = cols[:i] + cols[i + 1 :]
                        if others == place.reference[:i] + place.reference[i + 1 :]:
                            out[place.cell][r, cols[i]] += cost - (base if i else 0.0)
            self._tables[kind] = out
        return self._tables[kind]

    def _linear(self, kind: str) -> dict[str, torch.Tensor]:
        """The per-row entries alone (``rows``): ``[rows, ops]`` per cell type."""
        out = {}
        for cell, rows in self.rows.items():
            t = torch.zeros(len(rows), len(self.ops), dtype=torch.float64)
            for r, row in enumerate(rows):
                for k, shapes in enumerate(row):
                    t[r, k] = sum(self._entry(s, kind) for s in shapes)
            out[cell] = t
        return out

    def _place_costs(self, place: JointCost, kind: str) -> dict[tuple[int, ...], float]:
        cache = self.__dict__.setdefault("_place_cache", {})
        key = (id(place), kind)
        if key not in cache:
            cache[key] = {
                cols: sum(self._entry(s, kind) for s in shapes)
                for cols, shapes in place.entries.items()
            }
        return cache[key]

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
            self._tables.pop("linear/latency", None)
        cache = self.__dict__.get("_place_cache", {})
        for key in [k for k in cache if k[1] == "latency"]:
            del cache[key]

    # ---- costs --------------------------------------------------------------------------
    def expected(
        self,
        probs: dict[str, torch.Tensor],
        kind: str,
    ) -> torch.Tensor:
        """``fixed + Σ_rows Σ_ops p · cost`` plus, per joint place, ``Σ_j Π_r p(r, j_r) ·
        cost(j)`` over its joint choices j; differentiable in ``probs``."""
        check_kind(kind)
        linear = self._tables.get(f"linear/{kind}") if self._tables else None
        if linear is None:
            linear = self._linear(kind)
            self._tables = {**(self._tables or {}), f"linear/{kind}": linear}
        total = None
        for cell, t in linear.items():
            p = probs[cell]
            term = (p * t.to(device=p.device, dtype=p.dtype)).sum()
            total = term if total is None else total + term
        for place in self.joint:
            p = probs[place.cell]
            for cols, cost in self._place_costs(place, kind).items():
                if cost:
                    w = p[place.rows[0], cols[0]]
                    for r, k in zip(place.rows[1:], cols[1:], strict=True):
                        w = w * p[r, k]
                    total = total + w * cost
        return total + self.fixed(kind)

    def genotype_cost(self, space, genotype, kind: str) -> float:
        """The child network's cost: fixed + the chosen ops' entries."""
        tables = self._linear(kind) if self.joint else self.table(kind)
        total = self.fixed(kind)
        chosen: dict[tuple[str, int], int] = {}
        for c in genotype_choices(space, genotype):
            if c.op not in self.ops:
                raise ValueError(
                    f"op {c.op!r} of the genotype is not in the space's list {list(self.ops)}: "
                    "its cost is not tabled."
                )
            chosen[c.cell, c.row] = self.ops.index(c.op)
            total += float(tables[c.cell][c.row, self.ops.index(c.op)])
        for place in self.joint:
            cols = tuple(chosen[place.cell, r] for r in place.rows)
            total += self._place_costs(place, kind)[cols]
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
def _fixed_counts(space, child: nn.Module, input_shape) -> tuple[int, int]:
    pattern = space.child_op_pattern
    params = sum(
        p.numel()
        for n, p in child.named_parameters()
        if not n.startswith("auxiliary") and not pattern.match(n)
    )
    dtype = example_input(input_shape).dtype  # token ids for a language model's child
    macs = sum(
        v for n, v in module_macs(child, input_shape, dtype=dtype).items() if not pattern.match(n)
    )
    return params, macs


def build_cost_model(
    space, build_child: Callable[[Any], nn.Module], input_shape: Sequence[int] | None = None
) -> CostModel:
    """The cost tables of ``space`` for the child networks ``build_child(genotype)`` builds,
    read from the child of the space's reference genotype."""
    if space.child_op_pattern is None:
        with_tables = [n for n, cls in SPACES.items() if cls.child_op_pattern is not None]
        raise ValueError(
            f"No cost model for search space {space.name!r}; spaces with one: "
            f"{', '.join(with_tables)}."
        )
    input_shape = tuple(input_shape or space.input_shape)
    child = build_child(space.reference_genotype())
    rows = space.cost_rows(child, input_shape)
    joint = space.cost_places(child, input_shape)
    fixed_params, fixed_macs = _fixed_counts(space, child, input_shape)
    stub = space.stub_child(child, rows)
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
        joint=joint,
    )


def space_cost_model(space) -> CostModel:
    """Cost tables of the child at the space's own sizes (the network the supernet searches)."""
    return build_cost_model(
        space, lambda g: space.build_child(g, C=space.C, layers=space.layers, auxiliary=False)
    )
