"""Selection rules: α (as per-edge probabilities) → genotype. Registry by name.

Model-based selectors (RSWS' random sampling, SPOS' evolution) score architectures with the
trained supernet on validation batches instead; they are strategy components
(``strategy.selector``), run by the search stage after training.
"""

from __future__ import annotations

import torch

from nas.core.registry import Registry
from nas.strategies.protocols import SelectionRule
from nas.strategies.selection.argmax import argmax_per_edge, argmax_per_layer
from nas.strategies.selection.evolution import EvolutionSelector
from nas.strategies.selection.gdas_top2 import gdas_top2
from nas.strategies.selection.max_skip import darts_top2_max_skip
from nas.strategies.selection.random_search import RandomSearchSelector
from nas.strategies.selection.threshold import threshold
from nas.strategies.selection.top_k import darts_top2

SELECTION_RULES: Registry[SelectionRule] = Registry(
    "selection rule",
    "strategy.selection",
    {
        "darts_top2": darts_top2,
        "gdas_top2": gdas_top2,  # GDAS: top-2 (op, input) pairs per node, an input may repeat
        "argmax_per_edge": argmax_per_edge,
        "argmax_per_layer": argmax_per_layer,  # mbconv: strongest allowed op per layer
        "darts_top2_max_skip": darts_top2_max_skip,  # P-DARTS: ≤ 2 skips in the normal cell
        "threshold": threshold,  # FairDARTS: σ(α) ≥ 0.85 first, two inputs per node (NB201: argmax)
    },
)

__all__ = [
    "SELECTION_RULES",
    "EvolutionSelector",
    "RandomSearchSelector",
    "SelectionRule",
    "register_selection_rule",
    "select",
]


def register_selection_rule(name: str, rule: SelectionRule) -> SelectionRule:
    """Makes ``rule(probs, space) -> genotype`` selectable as ``strategy.selection=<name>`` (or
    as a space's ``default_selection``); returns ``rule``. The same rule again is a no-op;
    another rule under a taken name is refused."""
    if not callable(rule):
        raise TypeError(f"register_selection_rule({name!r}, {rule!r}): a rule is a callable.")
    return SELECTION_RULES.add(name, rule)


def select(rule: str, probs: dict[str, torch.Tensor], space):
    """Applies the selection rule ``rule`` to per-edge op probabilities of ``space``."""
    return SELECTION_RULES.lookup(rule)(probs, space)
