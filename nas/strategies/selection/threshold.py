"""FairDARTS' threshold rule (Chu, Zhou, Zhang, Li, "Fair DARTS: Eliminating Unfair Advantages in
Differentiable Architecture Search", ECCV 2020, sec. 3.4: ops with σ(α) ≥ σ_threshold = 0.85,
at most two inputs per node).

The official parser (xiaomi-automl/FairDARTS, ``fairdarts/utils.py`` ``parse``, method
``threshold_sparse``, the search default, with ``--op_threshold 0.85``) ranks a node's
incoming edges by their strongest op's σ(α), takes the two strongest edges, and on each keeps
its strongest op only if that op's σ(α) ≥ 0.85. When fewer pass, the node keeps fewer inputs
(one or none; the published FairDARTS genotypes have such nodes, and isolated nodes are
dropped from the network).

Here (the probabilities are σ(α), ``nas.strategies.samplers.SigmoidSampler``):

- **DARTS space.** Our ``Genotype`` and child network take exactly two inputs per node, so a
  node keeps its strongest edges at or above the threshold first and fills up to two with the
  strongest remaining ones (ranked the same way, by their best op). Since an edge whose best op
  passes always outranks one whose best op does not, the kept pairs are the official ones plus,
  where it dropped some, the next strongest: on σ(α) the result equals DARTS' top-2 rule.
  ``none`` is never kept (the official op set has no ``none``). ``below_threshold`` lists the
  kept pairs the official parser would have dropped.
- **NAS-Bench-201.** Every edge carries exactly one op; FairDARTS has no NB201 parser. Each
  edge keeps its strongest op other than ``none`` (argmax of σ(α) over the others), whether or
  not it passes the threshold; ``below_threshold`` lists the edges whose op does not.

Ties keep the lower edge index and the earlier op, as ``darts_top2``.
"""

from __future__ import annotations

import torch

from nas.core.genotype import GenotypeBase
from nas.strategies.selection.top_k import darts_genotype

OP_THRESHOLD = 0.85  # σ_threshold: train_search.py --op_threshold 0.85, the paper's value
INPUTS_PER_NODE = 2


def _candidates(ops: tuple[str, ...]) -> list[int]:
    cands = [o for o, name in enumerate(ops) if name != "none"]
    if not cands:
        raise ValueError("The threshold rule needs at least one op other than 'none'.")
    return cands


def _best_op(row: list[float], cands: list[int]) -> int:
    best = cands[0]
    for o in cands[1:]:
        if row[o] > row[best]:  # strict: the first op wins ties
            best = o
    return best


def threshold_darts_cell(
    W: torch.Tensor,
    ops: tuple[str, ...],
    edges: tuple[tuple[int, int], ...],
    threshold: float = OP_THRESHOLD,
) -> list[tuple[str, int]]:
    """(op, input) pairs of one DARTS cell, two per node, node by node, strongest first.

    Args:
        W: ``[edges, ops]`` σ(α) of one cell.
        ops: op names, in ``W``'s column order.
        edges: ``(input, node)`` per row of ``W``.
        threshold: σ_threshold; edges whose best op passes it are kept first.
    """
    rows = W.detach().double().cpu().tolist()
    cands = _candidates(ops)
    pairs: list[tuple[str, int]] = []
    for node in sorted({n for _, n in edges}):
        incoming = [e for e, (_, n) in enumerate(edges) if n == node]
        if len(incoming) < INPUTS_PER_NODE:
            raise ValueError(
                f"Node {node} has {len(incoming)} incoming edges; cannot keep {INPUTS_PER_NODE}."
            )
        best = {e: _best_op(rows[e], cands) for e in incoming}
        # Stable sorts: equal strengths keep the lower edge index first.
        ranked = sorted(incoming, key=lambda e: -rows[e][best[e]])
        passing = [e for e in ranked if rows[e][best[e]] >= threshold]
        kept = (passing + [e for e in ranked if e not in passing])[:INPUTS_PER_NODE]
        pairs.extend((ops[best[e]], edges[e][0]) for e in kept)
    return pairs


def threshold(probs: dict[str, torch.Tensor], space) -> GenotypeBase:
    """The genotype of σ(α) (given as ``probs``) by FairDARTS' threshold rule; see the module
    docstring for each space. Raises a ValueError naming the valid spaces for any other."""
    if space.default_selection == "argmax_per_edge":
        return _one_op_per_edge(probs, space)
    if space.default_selection != "darts_top2":
        raise ValueError(
            f"The threshold rule has no form for search_space={space.name!r}; it selects in "
            "the DARTS-style spaces (darts) and NAS-Bench-201 (nb201)."
        )
    return darts_genotype(probs, space, threshold_darts_cell)


def _one_op_per_edge(probs: dict[str, torch.Tensor], space) -> GenotypeBase:
    """Every edge keeps its strongest op other than ``none`` (the NAS-Bench-201 form)."""
    (cell,) = space.cell_types
    rows = probs[cell].detach().double().cpu().tolist()
    cands = _candidates(space.ops)
    kept = [(space.ops[_best_op(rows[e], cands)], i, j) for e, (i, j) in enumerate(space.edges)]
    return space.genotype_from_edges({cell: kept})


def below_threshold(
    probs: dict[str, torch.Tensor], space, threshold: float = OP_THRESHOLD
) -> dict[str, list[tuple[str, int, int, float]]]:
    """Per cell type, the ``(op, input, node, σ)`` the threshold rule keeps with σ < threshold:
    the ones the official parser would have left out (DARTS) or that pass no threshold (NB201)."""
    out: dict[str, list[tuple[str, int, int, float]]] = {}
    for cell in space.cell_types:
        rows = probs[cell].detach().double().cpu().tolist()
        if space.default_selection == "argmax_per_edge":
            kept = [(e, _best_op(rows[e], _candidates(space.ops))) for e in range(len(rows))]
        else:
            pairs = threshold_darts_cell(probs[cell], space.ops, space.edges, threshold)
            kept = []
            for k, (op, inp) in enumerate(pairs):
                node = 2 + k // INPUTS_PER_NODE
                kept.append((space.edges.index((inp, node)), space.ops.index(op)))
        out[cell] = [
            (space.ops[o], space.edges[e][0], space.edges[e][1], rows[e][o])
            for e, o in kept
            if rows[e][o] < threshold
        ]
    return out


__all__ = ["OP_THRESHOLD", "below_threshold", "threshold", "threshold_darts_cell"]
