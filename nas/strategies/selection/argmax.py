"""Argmax per edge, ``none`` included: the NAS-Bench-201 discretization (Dong & Yang, ICLR 2020,
as its DARTS/GDAS/... baselines derive a cell: every edge keeps its strongest op)."""

from __future__ import annotations

import torch

from nas.genotype import NB201Genotype


def argmax_per_edge(probs: dict[str, torch.Tensor], space) -> NB201Genotype:
    """The NB201 genotype whose edge (i→j) carries argmax_k probs[edge, k] (first op on ties)."""
    (cell,) = space.cell_types
    rows = probs[cell].detach().double().cpu()
    best = rows.argmax(dim=-1).tolist()  # torch.argmax returns the first maximum
    nodes: dict[int, list[tuple[str, int]]] = {}
    for e, (i, j) in enumerate(space.edges):
        nodes.setdefault(j, []).append((space.ops[best[e]], i))
    return NB201Genotype(nodes=[nodes[j] for j in sorted(nodes)], space=space.name)
