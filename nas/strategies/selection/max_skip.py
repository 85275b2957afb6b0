"""DARTS' rule with P-DARTS' cap on skip connections in the normal cell (Chen, Xie, Wu, Tian,
"Progressive Differentiable Architecture Search", ICCV 2019, sec. 3.3, "search space
regularization": at most M = 2 skip connections in the normal cell).

The official code (chenxin061/pdarts, ``train_search.py``: ``check_sk_number``,
``delete_min_sk_prob``, ``keep_1_on``, ``keep_2_branches``) derives the cell as DARTS does, and
while the normal cell has more than M skips it zeroes the probability of the weakest selected
skip (the smallest softmax weight among the edges whose chosen op is ``skip_connect``; the
lowest edge on ties), then re-derives: that edge falls back to its next strongest op and may
lose its place to another input of its node. The reduction cell is not capped. ``none`` is
never chosen (DARTS' rule, and the code's ``get_min_k_no_zero``).

Only the DARTS space has P-DARTS' normal cell: in any other space (NAS-Bench-201: one cell
type, every edge kept) the cap does not apply and the space's own rule is used.
"""

from __future__ import annotations

import torch

from nas.core.genotype import Genotype
from nas.strategies.selection.top_k import darts_top2, top_k_cell

SKIP = "skip_connect"
MAX_SKIP = 2  # P-DARTS' M on CIFAR


def selected_edges(
    W: torch.Tensor, ops: tuple[str, ...], edges: tuple[tuple[int, int], ...]
) -> list[tuple[int, str]]:
    """``(edge index, op)`` of the DARTS rule's choice in one cell."""
    nodes = sorted({n for _, n in edges})
    pairs = top_k_cell(W, ops, edges)
    per_node = len(pairs) // len(nodes)
    return [(edges.index((inp, nodes[j // per_node])), op) for j, (op, inp) in enumerate(pairs)]


def capped_cell(
    W: torch.Tensor,
    ops: tuple[str, ...],
    edges: tuple[tuple[int, int], ...],
    max_skip: int = MAX_SKIP,
) -> list[tuple[str, int]]:
    """The DARTS rule's (op, input) pairs of one cell, with at most ``max_skip`` skips."""
    if max_skip < 0:
        raise ValueError(f"max_skip must be >= 0, got {max_skip}.")
    W = W.detach().double().cpu().clone()
    if SKIP not in ops:
        return top_k_cell(W, ops, edges)
    s = ops.index(SKIP)
    while True:
        skips = [e for e, op in selected_edges(W, ops, edges) if op == SKIP]
        if len(skips) <= max_skip:
            return top_k_cell(W, ops, edges)
        weakest = min(skips, key=lambda e: (float(W[e, s]), e))
        W[weakest, s] = 0.0


def darts_top2_max_skip(probs: dict[str, torch.Tensor], space, max_skip: int = MAX_SKIP):
    """P-DARTS' genotype: DARTS' top-2 rule, at most ``max_skip`` skips in the normal cell.

    Outside the DARTS space (no normal cell) the space's own rule applies (see module doc).
    """
    if not issubclass(space.genotype_type, Genotype):  # no DARTS-style normal cell
        from nas.strategies.selection import select

        return select(space.default_selection, probs, space)
    genotype = darts_top2(probs, space)
    return Genotype(
        normal=capped_cell(probs["normal"], space.ops, space.edges, max_skip),
        normal_concat=genotype.normal_concat,
        reduce=genotype.reduce,
        reduce_concat=genotype.reduce_concat,
        space=genotype.space,
        reduce_cell=genotype.reduce_cell,
    )
