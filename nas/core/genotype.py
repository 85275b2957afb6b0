"""The genotype as the pipeline uses it: files, the published genotypes (the zoo), analysis.

The types (``GenotypeBase`` and each space's genotype class, parsing and validation) live with
the spaces in ``supernet.genotypes`` and are re-exported here; this module adds the
``genotype.json`` round trip (``save_genotype`` / ``load_genotype``), the zoo of published
genotypes (``genotype_zoo.json``), name-or-file resolution and the counts the logs report. It
reads every genotype through ``GenotypeBase``'s methods, whatever its space.
"""

from __future__ import annotations

import json
from pathlib import Path

from nas.core.io import atomic_write_json, read_json
from supernet import genotypes as _types
from supernet.genotypes import *  # noqa: F403 - the genotype types, re-exported
from supernet.genotypes import GENOTYPE_TYPES, Genotype, GenotypeBase, GenotypeError, KeptEdge

__all__ = [
    *_types.__all__,
    "canonical",
    "count_op",
    "genotype_from_text",
    "kept_edges",
    "load_genotype",
    "param_free_ops",
    "parse_genotype_text",
    "resolve_genotype",
    "save_genotype",
    "zoo",
]

ZOO_FILE = Path(__file__).with_name("genotype_zoo.json")


def save_genotype(genotype: GenotypeBase, path: str | Path) -> None:
    """Writes ``genotype.json`` atomically (a half-written file never looks like a result)."""
    atomic_write_json(path, genotype.to_dict())


def load_genotype(path: str | Path) -> GenotypeBase:
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
    for cls in GENOTYPE_TYPES.values():  # a space's own text form (``|op~0|+...``, ``mbconv:...``)
        if cls.matches_text(spec):
            return cls.from_text(spec)
    if spec.endswith(".json") or Path(spec).exists():
        return load_genotype(spec)
    raise GenotypeError(
        f"Unknown genotype {spec!r}: not a zoo name and not an existing genotype.json file. "
        f"Zoo names: {', '.join(sorted(table))}."
    )


def canonical(genotype: GenotypeBase) -> str:
    return str(genotype)


# Ops without weights of their own (in search the pools are followed by a non-affine BN, and a
# stride-2 skip is a FactorizedReduce, but both are "parameter-free" in the DARTS-collapse
# sense: Zela et al., ICLR 2020; Chu et al., DARTS-, ICLR 2021). ``none`` is not counted. The
# MobileNet chain's ``zero`` (the layer left out: an identity) is its parameter-free choice.
PARAM_FREE_OPS = frozenset({"skip_connect", "max_pool_3x3", "avg_pool_3x3", "zero"})


def kept_edges(genotype: GenotypeBase) -> dict[str, tuple[KeptEdge, ...]]:
    """(op, input, node) per kept edge, by searched cell type, keyed as the space keys α
    (``GenotypeBase.kept_edges``)."""
    return genotype.kept_edges()


def count_op(genotype: GenotypeBase, op: str) -> int:
    """How many kept edges carry ``op``, over all searched cells."""
    return sum(o == op for edges in kept_edges(genotype).values() for o, _, _ in edges)


def param_free_ops(genotype: GenotypeBase) -> int:
    """How many kept edges carry a parameter-free op (``PARAM_FREE_OPS``), over all searched
    cells: the count that grows when DARTS collapses to skip connections."""
    return sum(o in PARAM_FREE_OPS for edges in kept_edges(genotype).values() for o, _, _ in edges)


def parse_genotype_text(text: str, space: str) -> GenotypeBase:
    """A genotype from its canonical text form (``str(genotype)``) in ``space``."""
    cls = GENOTYPE_TYPES.get(space, Genotype)
    return cls.from_text(text, space=space)


def genotype_from_text(text: str, space: str | None = None) -> GenotypeBase:
    """A genotype from its text form: a type's own marked form (``matches_text``) whatever
    ``space`` says, else the form of ``space`` (the DARTS ``Genotype(...)`` when None)."""
    for cls in GENOTYPE_TYPES.values():
        if cls.matches_text(text):
            return cls.from_text(text)
    return Genotype.from_text(text) if space is None else parse_genotype_text(text, space)
