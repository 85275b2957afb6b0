"""Argmax per edge, ``none`` included: the NAS-Bench-201 discretization (Dong & Yang, ICLR 2020,
as its DARTS/GDAS/... baselines derive a cell: every edge keeps its strongest op).

``argmax_per_layer``: the same for the mbconv chain (ProxylessNAS derives its network by the
argmax of each mixed edge's α, Cai et al., ICLR 2019, sec. 3), over the ops the layer allows
(no ``zero`` on a layer that changes shape)."""

from __future__ import annotations

import torch

from nas.core.genotype import GenotypeBase


def argmax_per_edge(probs: dict[str, torch.Tensor], space) -> GenotypeBase:
    """The genotype whose edge (i→j) carries argmax_k probs[edge, k] (first op on ties)."""
    (cell,) = space.cell_types
    rows = probs[cell].detach().double().cpu()
    best = rows.argmax(dim=-1).tolist()  # torch.argmax returns the first maximum
    kept = [(space.ops[best[e]], i, j) for e, (i, j) in enumerate(space.edges)]
    return space.genotype_from_edges({cell: kept})


def argmax_per_layer(probs: dict[str, torch.Tensor], space) -> GenotypeBase:
    """Per layer, its strongest allowed op (``space.allowed_ops``; the first one on ties)."""
    (cell,) = space.cell_types
    rows = probs[cell].detach().double().cpu().tolist()
    kept = []
    for e, row in enumerate(rows):
        allowed = space.allowed_ops(e)
        best = allowed[0]
        for k in allowed[1:]:
            if row[k] > row[best]:  # strict: the first op wins ties
                best = k
        kept.append((space.ops[best], *space.edges[e]))
    return space.genotype_from_edges({cell: kept})
