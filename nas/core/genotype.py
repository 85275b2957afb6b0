"""The genotype as the pipeline uses it: files, the published genotypes (the zoo), analysis.

The types (``Genotype``, ``NB201Genotype``, parsing and validation) live with the spaces in
``supernet.genotypes`` and are re-exported here; this module adds the ``genotype.json`` round
trip (``save_genotype`` / ``load_genotype``), the zoo of published genotypes
(``genotype_zoo.json``), name-or-file resolution and the counts the logs report.
"""

from __future__ import annotations

import json
from pathlib import Path

from nas.core.io import atomic_write_json, read_json
from supernet.genotypes import (
    CELL_TYPES,
    DARTS_STYLE_SPACES,
    GENOTYPE_TYPES,
    Genotype,
    GenotypeError,
    NB201Genotype,
    Pair,
)

__all__ = [
    "CELL_TYPES",
    "DARTS_STYLE_SPACES",
    "GENOTYPE_TYPES",
    "Genotype",
    "GenotypeError",
    "NB201Genotype",
    "Pair",
    "canonical",
    "count_op",
    "kept_edges",
    "load_genotype",
    "param_free_ops",
    "parse_genotype_text",
    "resolve_genotype",
    "save_genotype",
    "zoo",
]

ZOO_FILE = Path(__file__).with_name("genotype_zoo.json")


def save_genotype(genotype: Genotype | NB201Genotype, path: str | Path) -> None:
    """Writes ``genotype.json`` atomically (a half-written file never looks like a result)."""
    atomic_write_json(path, genotype.to_dict())


def load_genotype(path: str | Path) -> Genotype | NB201Genotype:
    """Reads a ``genotype.json`` of any space; a malformed file raises ``GenotypeError``."""
    try:
        data = read_json(path, what="genotype file")
    except FileNotFoundError:
        raise
    except ValueError as err:
        raise GenotypeError(str(err)) from None
    return Genotype.from_dict(data, source=f"genotype file {path}")


def zoo() -> dict[str, Genotype]:
    """Published genotypes by lower-case name (data in ``genotype_zoo.json``)."""
    entries = json.loads(ZOO_FILE.read_text())
    return {
        name: Genotype.from_dict(entry["genotype"], source=f"zoo entry {name}")
        for name, entry in entries.items()
    }


def resolve_genotype(spec: str | Path) -> Genotype:
    """A zoo name (``darts_v2``) or a path to a ``genotype.json``."""
    spec = str(spec)
    table = zoo()
    if spec.lower() in table:
        return table[spec.lower()]
    if spec.startswith("|"):  # a NAS-Bench-201 architecture string
        return NB201Genotype.from_text(spec)
    for cls in GENOTYPE_TYPES.values():  # another space's text form (``mbconv:...``)
        if hasattr(cls, "matches_text") and cls.matches_text(spec):
            return cls.from_text(spec)
    if spec.endswith(".json") or Path(spec).exists():
        return load_genotype(spec)
    raise GenotypeError(
        f"Unknown genotype {spec!r}: not a zoo name and not an existing genotype.json file. "
        f"Zoo names: {', '.join(sorted(table))}."
    )


def canonical(genotype: Genotype | NB201Genotype) -> str:
    return str(genotype)


# Ops without weights of their own (in search the pools are followed by a non-affine BN, and a
# stride-2 skip is a FactorizedReduce, but both are "parameter-free" in the DARTS-collapse
# sense: Zela et al., ICLR 2020; Chu et al., DARTS-, ICLR 2021). ``none`` is not counted. The
# MobileNet chain's ``zero`` (the layer left out: an identity) is its parameter-free choice.
PARAM_FREE_OPS = frozenset({"skip_connect", "max_pool_3x3", "avg_pool_3x3", "zero"})
# NAS-Bench-201's one cell type: the key of its α (``NB201Space.cell_types``).
NB201_CELL_TYPE = "cell"

KeptEdge = tuple[str, int, int]  # (op, input node, node)


def kept_edges(genotype: Genotype | NB201Genotype) -> dict[str, tuple[KeptEdge, ...]]:
    """(op, input, node) per kept edge, by searched cell type, keyed as the space keys α.

    DARTS-style: ``"normal"`` and ``"reduce"`` (no ``"reduce"`` with a fixed reduction cell);
    pair k feeds node ``2 + k // 2``. NAS-Bench-201: ``"cell"``, node j = 1, 2, ...
    """
    if hasattr(genotype, "kept_edges"):  # a space's own genotype type (MBConvGenotype)
        return genotype.kept_edges()
    if isinstance(genotype, NB201Genotype):
        return {
            NB201_CELL_TYPE: tuple(
                (op, i, j) for j, node in enumerate(genotype.nodes, start=1) for op, i in node
            )
        }
    cells = ("normal",) if genotype.fixed_reduction else CELL_TYPES
    return {
        cell: tuple((op, i, 2 + k // 2) for k, (op, i) in enumerate(getattr(genotype, cell)))
        for cell in cells
    }


def count_op(genotype: Genotype | NB201Genotype, op: str) -> int:
    """How many kept edges carry ``op``, over all searched cells."""
    return sum(o == op for edges in kept_edges(genotype).values() for o, _, _ in edges)


def param_free_ops(genotype: Genotype | NB201Genotype) -> int:
    """How many kept edges carry a parameter-free op (``PARAM_FREE_OPS``), over all searched
    cells: the count that grows when DARTS collapses to skip connections."""
    return sum(o in PARAM_FREE_OPS for edges in kept_edges(genotype).values() for o, _, _ in edges)


def parse_genotype_text(text: str, space: str) -> Genotype | NB201Genotype:
    """A genotype from its canonical text form (``str(genotype)``) in ``space``."""
    cls = GENOTYPE_TYPES.get(space, Genotype)
    return cls.from_text(text, space=space)
