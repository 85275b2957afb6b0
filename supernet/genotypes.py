"""Genotype types: the discrete architectures the spaces build child networks from.

A DARTS-space genotype (``Genotype``) lists, per cell type, the (op, input) pairs chosen for
each intermediate node (two per node, node 2 first) and the nodes concatenated into the cell's
output. Its canonical text form is the ``Genotype(...)`` repr the DARTS paper published, so
published genotypes can be pasted in and ours can be pasted out. Spaces with other cell shapes
have their own class, chosen by the ``space`` field (``GENOTYPE_TYPES``): ``NB201Genotype``
holds per-node input lists and prints NAS-Bench-201's architecture string.

Pure data, parsing and validation, on the ground floor with the spaces (ARCHITECTURE.md, the rooms);
``nas.core.genotype`` adds the file round trip, the published genotypes (the zoo) and analysis
helpers on top.
"""

from __future__ import annotations

import ast
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from supernet.fixed_cells import check_reduce_cell
from supernet.ops import OPS

CELL_TYPES = ("normal", "reduce")

Pair = tuple[str, int]
KeptEdge = tuple[str, int, int]  # (op, input node, node)


class GenotypeError(ValueError):
    """A malformed genotype, genotype file or genotype name."""


class GenotypeBase(ABC):
    """What every genotype type offers, whatever its space's shape.

    Attributes:
        space: name of the search space the genotype belongs to.
        known_ops: the op names a genotype of this type may name (checked when it is made).
        diagram: how ``nas.search.figures`` draws it: ``"two_input_cell"`` (DARTS' cell: two
            inputs, intermediate nodes, concatenated output), ``"dag"`` (every node sums one op
            per earlier node) or ``"chain"`` (layer i is the edge i -> i + 1).
    """

    space: str
    known_ops: ClassVar[frozenset[str]] = frozenset(OPS)
    diagram: ClassVar[str] = "dag"

    @abstractmethod
    def kept_edges(self) -> dict[str, tuple[KeptEdge, ...]]:
        """(op, input, node) per kept edge, by searched cell type (keyed as the space keys α),
        in the genotype's own order: ``space.genotype_from_edges`` inverts it."""

    @abstractmethod
    def with_op(self, cell: str, slot: int, op: str) -> GenotypeBase:
        """The genotype with the op of kept edge ``slot`` of ``cell`` replaced by ``op``."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The ``genotype.json`` object (with its ``space``)."""

    @classmethod
    def matches_text(cls, text: str) -> bool:
        """Whether ``text`` is this type's own marked text form (read without knowing the
        space); the DARTS ``Genotype(...)`` form is read only where the space is known."""
        return False


@dataclass(frozen=True)
class Genotype(GenotypeBase):
    """A discrete DARTS-style architecture.

    Attributes:
        normal: (op, input) pairs, two per intermediate node, in node order.
        normal_concat: nodes whose outputs are concatenated into the normal cell's output.
        reduce: same as ``normal`` for the reduction cell.
        reduce_concat: same as ``normal_concat`` for the reduction cell.
        space: name of the search space the genotype belongs to.
        reduce_cell: ``"searched"``, or the name of a hand-designed reduction cell used in
            its place (``"gdas_frc"``, GDAS' fixed reduction cell); then ``reduce`` and
            ``reduce_concat`` are empty. Written only when it is not ``"searched"``.
    """

    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...]
    reduce_concat: tuple[int, ...]
    space: str = "darts"
    reduce_cell: str = "searched"

    diagram: ClassVar[str] = "two_input_cell"

    def __post_init__(self) -> None:
        try:
            check_reduce_cell(self.reduce_cell)
        except ValueError as err:
            raise GenotypeError(str(err)) from None
        if self.space not in DARTS_STYLE_SPACES:
            raise GenotypeError(
                f"space {self.space!r} has no DARTS-style genotype; valid spaces are "
                f"{sorted({*DARTS_STYLE_SPACES, *GENOTYPE_TYPES})}."
            )
        for cell in CELL_TYPES:
            if not isinstance(getattr(self, cell), (list, tuple)):
                raise GenotypeError(
                    f"{cell} must be a list of [op_name, input_node] pairs, got {getattr(self, cell)!r}."
                )
            pairs = tuple(_as_pair(p, cell) for p in getattr(self, cell))
            object.__setattr__(self, cell, pairs)
            concat = getattr(self, f"{cell}_concat")
            if not isinstance(concat, (list, tuple)) or not all(_is_int(c) for c in concat):
                raise GenotypeError(
                    f"{cell}_concat must be a list of node indices, got {concat!r}."
                )
            object.__setattr__(self, f"{cell}_concat", tuple(int(c) for c in concat))
            if cell == "reduce" and self.fixed_reduction:
                if pairs or concat:
                    raise GenotypeError(
                        f"reduce_cell={self.reduce_cell!r} fixes the reduction cell, so reduce "
                        f"and reduce_concat must be empty, got reduce={list(pairs)}, "
                        f"reduce_concat={list(concat)}."
                    )
                continue
            _check_cell(cell, pairs, getattr(self, f"{cell}_concat"))

    @property
    def steps(self) -> int:
        """Number of intermediate nodes per cell."""
        return len(self.normal) // 2

    @property
    def fixed_reduction(self) -> bool:
        """Whether the reduction cell is a hand-designed one (``reduce_cell``)."""
        return self.reduce_cell != "searched"

    def cell(self, cell_type: str) -> tuple[tuple[Pair, ...], tuple[int, ...]]:
        return getattr(self, cell_type), getattr(self, f"{cell_type}_concat")

    def kept_edges(self) -> dict[str, tuple[KeptEdge, ...]]:
        """``"normal"`` and ``"reduce"`` (no ``"reduce"`` with a fixed reduction cell); pair k
        feeds node ``2 + k // 2``."""
        cells = ("normal",) if self.fixed_reduction else CELL_TYPES
        return {
            cell: tuple((op, i, 2 + k // 2) for k, (op, i) in enumerate(getattr(self, cell)))
            for cell in cells
        }

    def with_op(self, cell: str, slot: int, op: str) -> Genotype:
        pairs = list(self.cell(cell)[0])
        pairs[slot] = (op, pairs[slot][1])
        return replace(self, **{cell: tuple(pairs)})

    def __str__(self) -> str:
        def pairs(ps: tuple[Pair, ...]) -> str:
            return "[" + ", ".join(f"('{op}', {i})" for op, i in ps) + "]"

        fixed = f", reduce_cell='{self.reduce_cell}'" if self.fixed_reduction else ""
        return (
            f"Genotype(normal={pairs(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={pairs(self.reduce)}, reduce_concat={list(self.reduce_concat)}{fixed})"
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "space": self.space,
            "normal": [list(p) for p in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(p) for p in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }
        if self.fixed_reduction:
            out["reduce_cell"] = self.reduce_cell
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> Genotype:
        """The genotype of a JSON object; an object of another space's shape (``"space":
        "nb201"``) gives that space's genotype class."""
        space = data.get("space") if isinstance(data, dict) else None
        if isinstance(space, str) and GENOTYPE_TYPES.get(space) not in (None, cls):
            return GENOTYPE_TYPES[data["space"]].from_dict(data, source)
        if not isinstance(data, dict):
            raise GenotypeError(
                f"{source}: expected a JSON object with keys {_KEYS}, got {type(data).__name__}."
            )
        # A fixed reduction cell needs no reduce pairs; they may be left out.
        fixed = data.get("reduce_cell", "searched") != "searched"
        required = _KEYS[:2] if fixed else _KEYS
        missing = [k for k in required if k not in data]
        extra = [k for k in data if k not in (*_KEYS, "space", "reduce_cell")]
        if missing or extra:
            raise GenotypeError(
                f"{source}: missing keys {missing} / unknown keys {extra}; a genotype has the keys "
                f"{['space', *_KEYS]} (and optionally 'reduce_cell')."
            )
        try:
            return cls(
                normal=data["normal"],
                normal_concat=data["normal_concat"],
                reduce=data.get("reduce", []),
                reduce_concat=data.get("reduce_concat", []),
                space=data.get("space", "darts"),
                reduce_cell=data.get("reduce_cell", "searched"),
            )
        except GenotypeError as err:
            raise GenotypeError(f"{source}: {err}") from None

    @classmethod
    def from_text(cls, text: str, space: str = "darts") -> Genotype:
        """Parses the canonical ``Genotype(normal=[...], ...)`` form."""
        try:
            call = ast.parse(text.strip(), mode="eval").body
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Genotype"):
                raise ValueError
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError):
            raise GenotypeError(
                f"Cannot parse genotype text {text[:200]!r}: expected the form "
                "Genotype(normal=[('op', input), ...], normal_concat=[...], reduce=[...], reduce_concat=[...])."
            ) from None
        return cls.from_dict({"space": space, **kwargs}, source="genotype text")


_KEYS = ("normal", "normal_concat", "reduce", "reduce_concat")
# Spaces whose genotypes are two (op, input) pairs per node, normal and reduction cells.
DARTS_STYLE_SPACES = ("darts",)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _as_pair(p: Any, cell: str) -> Pair:
    if not (
        isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) and _is_int(p[1])
    ):
        raise GenotypeError(f"{cell}: each entry must be an [op_name, input_node] pair, got {p!r}.")
    if p[0] not in OPS:
        raise GenotypeError(
            f"{cell}: unknown op {p[0]!r}; valid ops are: {', '.join(sorted(OPS))}."
        )
    return (p[0], int(p[1]))


def _check_cell(cell: str, pairs: tuple[Pair, ...], concat: tuple[int, ...]) -> None:
    if not pairs or len(pairs) % 2:
        raise GenotypeError(
            f"{cell}: expected two (op, input) pairs per intermediate node, got {len(pairs)} pairs."
        )
    steps = len(pairs) // 2
    for k, (op, inp) in enumerate(pairs):
        node = 2 + k // 2
        if not 0 <= inp < node:
            raise GenotypeError(
                f"{cell}: pair {k} ({op!r}, {inp}) feeds node {node}, whose valid inputs are 0..{node - 1}."
            )
    # One input may feed a node twice through two different ops (GDAS' rule keeps the top-2
    # (op, input) pairs over all of a node's edges; the child network builds one op per pair),
    # but the very same pair twice is no architecture any rule selects.
    for k in range(0, len(pairs), 2):
        if pairs[k] == pairs[k + 1]:
            op, inp = pairs[k]
            raise GenotypeError(
                f"{cell}: node {2 + k // 2} lists the pair ({op!r}, {inp}) twice; an input may "
                "feed a node twice only through two different ops."
            )
    if not concat or any(not 0 <= c < 2 + steps for c in concat) or len(set(concat)) != len(concat):
        raise GenotypeError(
            f"{cell}_concat {list(concat)} must list distinct nodes in 0..{steps + 1}."
        )


@dataclass(frozen=True)
class NB201Genotype(GenotypeBase):
    """A NAS-Bench-201 cell: per node j = 1, 2, ..., its (op, input) pairs, one per input i < j.

    The canonical text form is the benchmark's architecture string, nodes joined by ``+``:
    ``|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|...~2|``. JSON:
    ``{"space": "nb201", "nodes": [[["nor_conv_3x3", 0]], [[op, 0], [op, 1]], ...]}``.
    """

    nodes: tuple[tuple[Pair, ...], ...]
    space: str = "nb201"

    diagram: ClassVar[str] = "dag"

    def __post_init__(self) -> None:
        if not isinstance(self.nodes, (list, tuple)) or not self.nodes:
            raise GenotypeError(f"nodes must be a non-empty list of nodes, got {self.nodes!r}.")
        nodes = []
        for j, node in enumerate(self.nodes, start=1):
            if not isinstance(node, (list, tuple)) or not node:
                raise GenotypeError(
                    f"node {j}: expected a list of [op, input] pairs, got {node!r}."
                )
            pairs = tuple(_as_pair(p, f"node {j}") for p in node)
            for op, i in pairs:
                if not 0 <= i < j:
                    raise GenotypeError(
                        f"node {j}: input {i} of {op!r} is not one of the earlier nodes 0..{j - 1}."
                    )
            if len({i for _, i in pairs}) != len(pairs):
                raise GenotypeError(f"node {j}: an input appears twice in {list(pairs)}.")
            nodes.append(pairs)
        object.__setattr__(self, "nodes", tuple(nodes))

    def __str__(self) -> str:
        return "+".join("|" + "|".join(f"{op}~{i}" for op, i in node) + "|" for node in self.nodes)

    def kept_edges(self) -> dict[str, tuple[KeptEdge, ...]]:
        """The one cell type ``"cell"`` (``NB201Space.cell_types``), node j = 1, 2, ..."""
        return {
            NB201_CELL_TYPE: tuple(
                (op, i, j) for j, node in enumerate(self.nodes, start=1) for op, i in node
            )
        }

    def with_op(self, cell: str, slot: int, op: str) -> NB201Genotype:
        flat = [list(p) for node in self.nodes for p in node]
        flat[slot][0] = op
        nodes, k = [], 0
        for node in self.nodes:
            nodes.append(tuple(tuple(p) for p in flat[k : k + len(node)]))
            k += len(node)
        return replace(self, nodes=tuple(nodes))

    @classmethod
    def matches_text(cls, text: str) -> bool:
        return text.startswith("|")

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "nodes": [[list(p) for p in node] for node in self.nodes]}

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> NB201Genotype:
        return _from_fields(cls, data, "nodes", source)

    @classmethod
    def from_text(cls, text: str, space: str = "nb201") -> NB201Genotype:
        """Parses the benchmark's ``|op~input|...|+|...|`` string."""
        nodes = []
        for part in text.strip().split("+"):
            if not (len(part) > 2 and part.startswith("|") and part.endswith("|")):
                raise GenotypeError(
                    f"Cannot parse NAS-Bench-201 architecture string {text[:200]!r}: expected "
                    "nodes like |op~input|op~input| joined by '+'."
                )
            pairs = []
            for item in part[1:-1].split("|"):
                op, sep, inp = item.partition("~")
                if not sep or not inp.isdigit():
                    raise GenotypeError(
                        f"Cannot parse {item!r} in {text[:200]!r}: expected op~input."
                    )
                pairs.append((op, int(inp)))
            nodes.append(pairs)
        return cls(nodes=nodes, space=space)


# NAS-Bench-201's one cell type: the key of its α (``NB201Space.cell_types``).
NB201_CELL_TYPE = "cell"

# Genotype classes of the spaces whose cells are not DARTS-shaped, by ``space`` name.
GENOTYPE_TYPES: dict[str, type[GenotypeBase]] = {"nb201": NB201Genotype}


# The MobileNet-style space's per-layer choices (``supernet.spaces.mbconv``), in α's column
# order: kernel size x expansion as ProxylessNAS lists them ("3x3_MBConv3", "3x3_MBConv6", ...,
# "7x7_MBConv6"), then ``zero`` (the layer is skipped: its output is its input).
MBCONV_KERNEL_SIZES = (3, 5, 7)
MBCONV_EXPANSIONS = (3, 6)
MBCONV_ZERO = "zero"
MBCONV_OPS = (
    *(f"k{k}_e{e}" for k in MBCONV_KERNEL_SIZES for e in MBCONV_EXPANSIONS),
    MBCONV_ZERO,
)
MBCONV_TEXT_PREFIX = "mbconv:"


def parse_mbconv_op(op: str) -> tuple[int, int] | None:
    """(kernel size, expansion) of ``k<k>_e<e>``, or None for ``zero``."""
    if op == MBCONV_ZERO:
        return None
    k, _, e = op.partition("_")
    return int(k[1:]), int(e[1:])


@dataclass(frozen=True)
class MBConvGenotype(GenotypeBase):
    """A chain of MBConv layers: one choice per searchable layer, in network order.

    The canonical text form is ``mbconv:`` followed by the choices joined by ``-``, e.g.
    ``mbconv:k3_e3-zero-k5_e6`` (no commas, brackets or spaces: a Hydra override takes it as
    it is, ``genotype=mbconv:...``). JSON: ``{"space": "mbconv", "layers": ["k3_e3", ...]}``.
    Which layers may be ``zero`` depends on the layout: the space checks it
    (``MBConvSpace.validate_genotype``).
    """

    layers: tuple[str, ...]
    space: str = "mbconv"

    known_ops: ClassVar[frozenset[str]] = frozenset(MBCONV_OPS)
    diagram: ClassVar[str] = "chain"

    def __post_init__(self) -> None:
        if isinstance(self.layers, str) or not isinstance(self.layers, (list, tuple)):
            raise GenotypeError(f"layers must be a list of op names, got {self.layers!r}.")
        if not self.layers:
            raise GenotypeError("layers must name at least one searchable layer's op, got [].")
        for i, op in enumerate(self.layers):
            if op not in MBCONV_OPS:
                raise GenotypeError(
                    f"layer {i}: unknown op {op!r}; valid choices are: {', '.join(MBCONV_OPS)}."
                )
        object.__setattr__(self, "layers", tuple(self.layers))

    def __str__(self) -> str:
        return MBCONV_TEXT_PREFIX + "-".join(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "layers": list(self.layers)}

    def kept_edges(self) -> dict[str, tuple[KeptEdge, ...]]:
        """(op, input, node) per layer: layer i is the edge (i → i + 1) of the chain."""
        return {"layers": tuple((op, i, i + 1) for i, op in enumerate(self.layers))}

    def with_op(self, cell: str, slot: int, op: str) -> MBConvGenotype:
        layers = list(self.layers)
        layers[slot] = op
        return replace(self, layers=tuple(layers))

    @classmethod
    def matches_text(cls, text: str) -> bool:
        return text.strip().startswith(MBCONV_TEXT_PREFIX)

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> MBConvGenotype:
        return _from_fields(cls, data, "layers", source)

    @classmethod
    def from_text(cls, text: str, space: str = "mbconv") -> MBConvGenotype:
        """Parses ``mbconv:k3_e3-zero-...``."""
        text = text.strip()
        if not cls.matches_text(text) or len(text) == len(MBCONV_TEXT_PREFIX):
            raise GenotypeError(
                f"Cannot parse MBConv genotype {text[:200]!r}: expected "
                f"'{MBCONV_TEXT_PREFIX}' and one op per layer joined by '-', e.g. "
                f"'{MBCONV_TEXT_PREFIX}k3_e3-zero-k7_e6'; ops: {', '.join(MBCONV_OPS)}."
            )
        return cls(layers=text[len(MBCONV_TEXT_PREFIX) :].split("-"), space=space)


GENOTYPE_TYPES["mbconv"] = MBConvGenotype


def _from_fields(cls, data: Any, field: str, source: str):
    """``cls(space=..., <field>=...)`` of a JSON object with exactly those two keys; errors name
    ``source`` (the file)."""
    if not isinstance(data, dict) or set(data) != {"space", field}:
        raise GenotypeError(
            f"{source}: a {cls.__name__} is a JSON object with exactly the keys "
            f"['space', '{field}'], got {data!r:.200}."
        )
    try:
        return cls(**{field: data[field]}, space=data["space"])
    except GenotypeError as err:
        raise GenotypeError(f"{source}: {err}") from None


# What ``nas.core.genotype`` re-exports: the genotype types and their vocabulary.
__all__ = [
    "CELL_TYPES",
    "DARTS_STYLE_SPACES",
    "GENOTYPE_TYPES",
    "Genotype",
    "GenotypeBase",
    "GenotypeError",
    "KeptEdge",
    "MBConvGenotype",
    "NB201Genotype",
    "Pair",
]
