"""Selection rules: α (as per-edge probabilities) → genotype. Registry by name."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nas.genotype import Genotype
from nas.strategies.selection.top_k import darts_top2

SelectionRule = Callable[..., Genotype]

SELECTION_RULES: dict[str, SelectionRule] = {"darts_top2": darts_top2}


def select(rule: str, probs: dict[str, torch.Tensor], space) -> Genotype:
    """Applies the selection rule ``rule`` to per-edge op probabilities of ``space``."""
    if rule not in SELECTION_RULES:
        raise ValueError(
            f"Unknown selection rule {rule!r}. Valid choices are: {', '.join(sorted(SELECTION_RULES))}."
        )
    return SELECTION_RULES[rule](probs, space)
