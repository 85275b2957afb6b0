"""DARTS' discretization rule (Liu et al., ICLR 2019, sec. 2.4).

Per intermediate node keep the k = 2 incoming edges whose strongest non-``none`` op weight is
largest (strongest first; ties keep the lower edge index first), and on each kept edge its
strongest op other than ``none`` (the first one on ties).
"""

from __future__ import annotations

import torch

from nas.core.genotype import Genotype


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


def darts_genotype(probs: dict[str, torch.Tensor], space, cell_rule) -> Genotype:
    """A DARTS-style genotype whose searched cells are ``cell_rule(probs[cell], ops, edges)``;
    the concatenated nodes are the last ``space.multiplier``, and a fixed reduction cell
    (``reduce_cell``) has no α: only the normal cell is selected."""
    concat = list(range(2 + space.steps - space.multiplier, 2 + space.steps))
    reduce_cell = getattr(space, "reduce_cell", "searched")
    fixed = reduce_cell != "searched"
    return Genotype(
        normal=cell_rule(probs["normal"], space.ops, space.edges),
        normal_concat=concat,
        reduce=[] if fixed else cell_rule(probs["reduce"], space.ops, space.edges),
        reduce_concat=[] if fixed else concat,
        space=space.name,
        reduce_cell=reduce_cell,
    )


def darts_top2(probs: dict[str, torch.Tensor], space) -> Genotype:
    """The DARTS genotype of ``softmax(α)`` (given as ``probs``) in a DARTS-style space."""
    if [o for o in space.ops if o != "none"] == []:
        raise ValueError("The DARTS rule needs at least one op other than 'none'.")
    return darts_genotype(probs, space, top_k_cell)
