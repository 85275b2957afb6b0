"""Architecture encodings: a genotype as a fixed-length float vector of its space, the input of
the learned predictors (``nas.estimate.predictors``).

White, Neiswanger, Nolen, Savani, "A Study on Encodings for Neural Architecture Search",
NeurIPS 2020 (and BANANAS, White et al., AAAI 2021) compare the two built here:

- ``onehot`` (their "adjacency one-hot"): per cell type, per α row (edge ``space.edges[e]``),
  a one-hot over ``space.ops``; a row is all zeros where the genotype does not keep the edge
  (DARTS keeps 2 of each node's inputs), and has two ones where it keeps the edge twice through
  two ops (GDAS' rule). For mbconv (one α row per layer) it is the choice vector per layer.
  It is injective: distinct genotypes of a space give distinct vectors.
- ``path``: one indicator per op sequence that some input → output path of the cell's DAG
  carries, over every sequence of 1 to ``max_length`` ops (the space's ops without ``none``,
  ``K`` of them: ``K + K² + ... + K^max_length`` indicators per input and cell type). A path
  through an edge carrying ``none`` (the zero op) carries nothing and is no path. NB201: the
  paths from node 0 to the cell's last node (``max_length`` = the nodes after the input: 3,
  4 + 16 + 64 = 84 indicators). DARTS: per cell type, the paths from each of the two cell
  inputs (nodes 0 and 1, separate blocks) to a node the output concatenates
  (``max_length`` = the intermediate nodes, 4: 2 · 2 · (7 + ... + 7⁴) = 11200 indicators).
  Two structural paths with the same op sequence set the same indicator (it encodes what the
  cell computes, not where), so it is not injective. A chain (mbconv) has a single path, the
  layer sequence itself: no path encoding, use ``onehot``.

Feature names (``feature_names``) say what each column is: ``cell/edge(0,1)/nor_conv_3x3``
(onehot), ``cell/in0/nor_conv_3x3>skip_connect`` (path: from input 0, ops in path order).
A new encoding subclasses ``Encoding`` and registers itself (``register_encoding``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import numpy as np

from nas.core.genotype import Genotype, GenotypeBase, GenotypeError, KeptEdge
from nas.core.registry import Registry
from supernet.spaces.base import SearchSpace

NONE_OP = "none"  # the zero op: an edge carrying it is no connection


class Encoding(ABC):
    """Turns a genotype of a space into a fixed-length vector (one length per space)."""

    @abstractmethod
    def feature_names(self, space: SearchSpace) -> list[str]:
        """What each column is; their count is the encoding's length for ``space``."""

    @abstractmethod
    def encode_one(self, space: SearchSpace, genotype: GenotypeBase) -> np.ndarray:
        """The genotype's vector, ``float64`` of length ``len(feature_names(space))``."""


ENCODINGS: Registry[Encoding] = Registry("encoding", "encoding")


def register_encoding(name: str, encoding: Encoding) -> Encoding:
    """Makes ``encode(..., name)`` use ``encoding``; returns it."""
    if not isinstance(encoding, Encoding):
        raise TypeError(f"register_encoding({name!r}, {encoding!r}): not an Encoding instance.")
    return ENCODINGS.add(name, encoding)


def encode(
    space: SearchSpace, genotypes: Iterable[GenotypeBase], name: str = "onehot"
) -> np.ndarray:
    """``[len(genotypes), length]`` float64: the encoding ``name`` of each genotype of
    ``space``; an unknown name is refused with the registered ones."""
    encoding = ENCODINGS.lookup(name)
    rows = [encoding.encode_one(space, g) for g in genotypes]
    if not rows:
        return np.zeros((0, len(encoding.feature_names(space))))
    return np.stack(rows)


def feature_names(space: SearchSpace, name: str = "onehot") -> list[str]:
    """The column names of encoding ``name`` for ``space``."""
    return ENCODINGS.lookup(name).feature_names(space)


def checked_edges(space: SearchSpace, genotype: GenotypeBase) -> dict[str, tuple[KeptEdge, ...]]:
    """The genotype's kept edges per cell type of ``space``, after checking that it is a
    genotype of ``space``: its edges among ``space.edges`` and its ops among ``space.ops``."""
    space.validate_genotype(genotype, check_ops=False)
    kept = genotype.kept_edges()
    if set(kept) != set(space.cell_types):
        raise GenotypeError(
            f"Genotype {genotype} has the cell types {sorted(kept)}; search_space={space.name} "
            f"encodes {list(space.cell_types)}."
        )
    edges = set(space.edges)
    for cell, cell_edges in kept.items():
        for op, i, j in cell_edges:
            if (i, j) not in edges:
                raise GenotypeError(
                    f"Genotype {genotype}: {cell} edge ({i}, {j}) is not an edge of "
                    f"search_space={space.name} (its edges: {list(space.edges)})."
                )
            if op not in space.ops:
                raise GenotypeError(
                    f"Genotype {genotype}: {cell} edge ({i}, {j}) carries {op!r}, which is not "
                    f"in search_space={space.name}'s ops {list(space.ops)}; it cannot be encoded."
                )
    return kept


class OneHot(Encoding):
    """Per cell type, per α row, a one-hot over the space's ops (module docstring)."""

    def feature_names(self, space: SearchSpace) -> list[str]:
        return [
            f"{cell}/edge({i},{j})/{op}"
            for cell in space.cell_types
            for i, j in space.edges
            for op in space.ops
        ]

    def encode_one(self, space: SearchSpace, genotype: GenotypeBase) -> np.ndarray:
        kept = checked_edges(space, genotype)
        n_edges, n_ops = len(space.edges), len(space.ops)
        row = {edge: e for e, edge in enumerate(space.edges)}
        out = np.zeros((len(space.cell_types), n_edges, n_ops))
        for c, cell in enumerate(space.cell_types):
            for op, i, j in kept[cell]:
                out[c, row[(i, j)], space.ops.index(op)] = 1.0
        return out.reshape(-1)


class PathEncoding(Encoding):
    """One indicator per op sequence of an input → output path (module docstring)."""

    def path_ops(self, space: SearchSpace) -> tuple[str, ...]:
        """The ops a path may carry: the space's ops but ``none``."""
        return tuple(op for op in space.ops if op != NONE_OP)

    def layout(self, space: SearchSpace) -> tuple[tuple[int, ...], int]:
        """(the cell's input nodes, the longest path's length); a chain has no paths."""
        diagram = space.genotype_type.diagram
        nodes = sorted({j for _, j in space.edges})
        if diagram == "two_input_cell":
            return (0, 1), len(nodes)
        if diagram == "dag":
            return (0,), len(nodes)
        raise ValueError(
            f"search_space={space.name} is not a cell space (its genotypes are a {diagram!r} "
            "of layers, a single path): the path encoding does not apply; use the onehot "
            "encoding."
        )

    def outputs(self, space: SearchSpace, genotype: GenotypeBase, cell: str) -> set[int]:
        """The nodes a path ends at: those the cell's output concatenates (DARTS), or the last
        node (a DAG cell such as NB201's)."""
        if isinstance(genotype, Genotype):
            return set(genotype.cell(cell)[1])
        return {max(j for _, j in space.edges)}

    def feature_names(self, space: SearchSpace) -> list[str]:
        inputs, max_length = self.layout(space)
        ops = self.path_ops(space)
        sequences: list[tuple[str, ...]] = [()]
        by_length: list[tuple[str, ...]] = []
        for _ in range(max_length):
            # Index of a sequence: its length's block, then the ops in base K, first op least
            # significant (White et al.'s indexing).
            sequences = [(*s, op) for op in ops for s in sequences]
            by_length += sequences
        return [
            f"{cell}/in{k}/{'>'.join(s)}"
            for cell in space.cell_types
            for k in inputs
            for s in by_length
        ]

    def sequence_index(self, sequence: Sequence[int], n_ops: int) -> int:
        """Column of an op sequence (op indices among ``path_ops``) within its input's block."""
        offset = sum(n_ops**length for length in range(1, len(sequence)))
        return offset + sum(op * n_ops**p for p, op in enumerate(sequence))

    def encode_one(self, space: SearchSpace, genotype: GenotypeBase) -> np.ndarray:
        inputs, max_length = self.layout(space)
        kept = checked_edges(space, genotype)
        ops = self.path_ops(space)
        block = sum(len(ops) ** length for length in range(1, max_length + 1))
        out = np.zeros((len(space.cell_types), len(inputs), block))
        for c, cell in enumerate(space.cell_types):
            leaving: dict[int, list[tuple[int, int]]] = {}
            for op, i, j in kept[cell]:
                if op != NONE_OP:
                    leaving.setdefault(i, []).append((ops.index(op), j))
            ends = self.outputs(space, genotype, cell)
            for k, start in enumerate(inputs):
                stack: list[tuple[int, tuple[int, ...]]] = [(start, ())]
                while stack:
                    node, sequence = stack.pop()
                    for op, j in leaving.get(node, ()):
                        path = (*sequence, op)
                        if j in ends:
                            out[c, k, self.sequence_index(path, len(ops))] = 1.0
                        stack.append((j, path))
        return out.reshape(-1)


register_encoding("onehot", OneHot())
register_encoding("path", PathEncoding())


def resolve_encoding(space: SearchSpace, name: str) -> str:
    """``name``, or for ``auto`` the path encoding where the space has one (cell spaces; the
    encoding BANANAS found best) and one-hot elsewhere (MobileNet chains)."""
    if name != "auto":
        ENCODINGS.lookup(name)
        return name
    try:
        feature_names(space, "path")
    except ValueError:
        return "onehot"
    return "path"
