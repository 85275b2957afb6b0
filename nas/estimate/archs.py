"""The architectures an estimator scores: read from a file, sampled at random, or every one of
a small space (``estimate.archs``, ``estimate.sample``).

An architecture file holds one per line: a space's own text form (a NAS-Bench-201 string
``|nor_conv_3x3~0|+|...|``, an ``mbconv:k3_e3-...`` chain, DARTS' ``Genotype(normal=[...],
...)``) or one genotype JSON object (``genotype.json``'s form). Blank lines and lines starting
with ``#`` are skipped. Each architecture keeps the text it was read as: ``estimates.csv``
writes it back unchanged, so a reader can join on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from supernet.genotypes import GENOTYPE_TYPES, GenotypeBase, GenotypeError
from supernet.spaces.base import SearchSpace


@dataclass(frozen=True)
class Arch:
    """A genotype and its text in ``estimates.csv`` (as read, else ``str(genotype)``)."""

    text: str
    genotype: GenotypeBase


def parse_arch(line: str, space: SearchSpace, source: str = "architecture") -> GenotypeBase:
    """The genotype of one line of an architecture file, checked against ``space``."""
    text = line.strip()
    try:
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise GenotypeError(f"not valid JSON ({err.msg} at column {err.colno})") from None
            if isinstance(data, dict):
                data.setdefault("space", space.name)
            genotype = space.genotype_type.from_dict(data, source=source)
        else:
            marked = [cls for cls in GENOTYPE_TYPES.values() if cls.matches_text(text)]
            cls = marked[0] if marked else space.genotype_type
            genotype = cls.from_text(text, space=space.name)
        space.validate_genotype(genotype)
    except GenotypeError as err:
        raise ValueError(
            f"{source}: {err} Each line of estimate.archs is one architecture of "
            f"search_space={space.name}: its text form (e.g. {space.reference_genotype()}) or "
            "its genotype.json object."
        ) from None
    return genotype


def read_archs(path: str | Path, space: SearchSpace) -> list[Arch]:
    """Every architecture of the file ``path`` (``estimate.archs``), in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"estimate.archs={str(path)!r}: no such file. It lists one architecture per line "
            f"(search_space={space.name}: e.g. {space.reference_genotype()})."
        )
    archs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        genotype = parse_arch(line, space, source=f"estimate.archs={path}, line {number}")
        archs.append(Arch(line.strip(), genotype))
    if not archs:
        raise ValueError(f"estimate.archs={str(path)!r} lists no architecture.")
    return archs


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` distinct uniformly random architectures (``SearchSpace.random_genotype``), or all
    of them where the space holds fewer; the same for the same seed."""
    if n < 1:
        raise ValueError(f"estimate.sample={n}: give a number of architectures >= 1, or all.")
    total = space.genotype_count()
    if total is not None and n >= total:
        return list(all_archs(space))
    generator = torch.Generator().manual_seed(seed)
    seen: dict[str, Arch] = {}
    draws = 0
    while len(seen) < n:
        genotype = space.random_genotype(generator)
        seen.setdefault(str(genotype), Arch(str(genotype), genotype))
        draws += 1
        if draws > 100 * n:  # a space with fewer distinct genotypes than it says
            break
    return list(seen.values())


def all_archs(space: SearchSpace) -> Iterator[Arch]:
    """Every architecture of an enumerable space (``estimate.sample=all``)."""
    for genotype in space.all_genotypes():
        yield Arch(str(genotype), genotype)
