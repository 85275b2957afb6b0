"""DARTS' discretization rule (Liu et al., ICLR 2019, sec. 2.4).

Per intermediate node keep the k = 2 incoming edges whose strongest non-``none`` op weight is
largest (strongest first; ties keep the lower edge index first), and on each kept edge its
strongest op other than ``none`` (the first one on ties).
"""

from __future__ import annotations

import torch

from nas.core.genotype import GenotypeBase


def top_k_cell(
    W: torch.Tensor, ops: tuple[str, ...], edges: tuple[tuple[int, int], ...], k: int = 2
) -> list[tuple[str, int]]:
    """Selected (op, input) pairs of one cell, node by node. ``W``: ``[edges, ops]`` weights."""
    rows = W.detach().double().cpu().tolist()
    candidates = [i for i, name in enumerate(ops) if name != "none"]
    pairs: list[tuple[str, int]] = []
    for node in sorted({n for _, n in edges}):
        incoming = [e for e, (_, n) in enumerate(edges) if n == node]
        if len(incoming) < k:
            raise ValueError(f"Node {node} has {len(incoming)} incoming edges; cannot keep {k}.")
        best_op = {}
        for e in incoming:
            best = candidates[0]
            for o in candidates[1:]:
                if rows[e][o] > rows[e][best]:  # strict: the first op wins ties
                    best = o
            best_op[e] = best
        # sorted() is stable, so equal strengths keep the lower edge index first.
        kept = sorted(incoming, key=lambda e: -rows[e][best_op[e]])[:k]
        pairs.extend((ops[best_op[e]], edges[e][0]) for e in kept)
    return pairs


def darts_genotype(probs: dict[str, torch.Tensor], space, cell_rule) -> GenotypeBase:
    """A DARTS-style genotype whose searched cells are ``cell_rule(probs[cell], ops, edges)``
    (two (op, input) pairs per node, node by node); the space completes it
    (``genotype_from_edges``: the concatenated nodes, a fixed reduction cell)."""
    return space.genotype_from_edges(
        {cell: node_pairs(cell_rule(probs[cell], space.ops, space.edges), space.edges)
         for cell in space.cell_types}
    )  # fmt: skip


def node_pairs(
    pairs: list[tuple[str, int]], edges: tuple[tuple[int, int], ...]
) -> list[tuple[str, int, int]]:
    """(op, input, node) of a cell rule's (op, input) pairs, listed node by node, the same
    number per node."""
    nodes = sorted({n for _, n in edges})
    per_node = len(pairs) // len(nodes)
    return [(op, inp, nodes[k // per_node]) for k, (op, inp) in enumerate(pairs)]


def darts_top2(probs: dict[str, torch.Tensor], space) -> GenotypeBase:
    """The DARTS genotype of ``softmax(α)`` (given as ``probs``) in a DARTS-style space."""
    if [o for o in space.ops if o != "none"] == []:
        raise ValueError("The DARTS rule needs at least one op other than 'none'.")
    return darts_genotype(probs, space, top_k_cell)
