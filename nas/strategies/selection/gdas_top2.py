"""GDAS' discretization rule in the DARTS space (Dong & Yang, CVPR 2019).

The official code (D-X-Y/AutoDL-Projects, ``lib/models/cell_searchs/search_model_gdas_nasnet.py``
and ``search_model_gdas_frc_nasnet.py``, ``genotype()``) ranks, per intermediate node, every
(op, input) pair over all the node's incoming edges by its softmax(α) weight, ``none``
excluded, and keeps the two strongest pairs. Unlike DARTS' rule
(``nas.strategies.selection.top_k.darts_top2``: two distinct edges, one op each), both kept
pairs may come from the same input, with two different ops.
"""

from __future__ import annotations

import torch

from nas.core.genotype import Genotype
from nas.strategies.selection.top_k import darts_genotype


def gdas_top2_cell(
    W: torch.Tensor, ops: tuple[str, ...], edges: tuple[tuple[int, int], ...], k: int = 2
) -> list[tuple[str, int]]:
    """Selected (op, input) pairs of one cell, node by node, strongest first.

    Args:
        W: ``[edges, ops]`` op weights of one cell.
        ops: op names, in ``W``'s column order.
        edges: ``(input, node)`` per row of ``W``.
        k: pairs kept per node.

    Returns:
        ``k`` pairs per node. Ties keep the official code's order (a stable sort of the pairs
        listed input by input, op by op): the lower input first, then the earlier op.
    """
    rows = W.detach().double().cpu().tolist()
    candidates = [o for o, name in enumerate(ops) if name != "none"]
    if not candidates:
        raise ValueError("The GDAS rule needs at least one op other than 'none'.")
    pairs: list[tuple[str, int]] = []
    for node in sorted({n for _, n in edges}):
        incoming = sorted(
            (e for e, (_, n) in enumerate(edges) if n == node), key=lambda e: edges[e][0]
        )
        scored = [(rows[e][o], edges[e][0], o) for e in incoming for o in candidates]
        if len(scored) < k:
            raise ValueError(f"Node {node} has {len(scored)} (op, input) pairs; cannot keep {k}.")
        # sorted() is stable: equal weights keep the listing order (input, then op).
        kept = sorted(scored, key=lambda s: -s[0])[:k]
        pairs.extend((ops[o], inp) for _, inp, o in kept)
    return pairs


def gdas_top2(probs: dict[str, torch.Tensor], space) -> Genotype:
    """The GDAS genotype of ``softmax(α)`` (given as ``probs``) in a DARTS-style space.

    With a fixed reduction cell (``space.reduce_cell``, GDAS' FRC) only the normal cell has α
    and is selected, as in the official ``search_model_gdas_frc_nasnet.py``.
    """
    return darts_genotype(probs, space, gdas_top2_cell)
