"""FairDARTS' collaborative relaxation (Chu, Zhou, Zhang, Li, "Fair DARTS: Eliminating Unfair
Advantages in Differentiable Architecture Search", ECCV 2020, sec. 3.2, eq. 5).

Each op's mixing weight is σ(α), independently of the other ops on its edge (no softmax), so an
op does not have to suppress its rivals to grow: the "exclusive competition" that lets skip
connections crowd out the rest in DARTS is removed. The official code
(xiaomi-automl/FairDARTS, ``fairdarts/model_search.py``) mixes with ``F.sigmoid(alphas)`` and
logs and parses the same σ(α).

The probabilities that are logged and discretized are σ(α) itself, one independent value in
(0, 1) per op: the rows do not sum to 1. The selection rule ``threshold``
(``nas.strategies.selection.threshold``) reads them as such; the per-epoch report normalises
each row before its entropy and centres the heatmaps on σ(0) = 0.5 (``independent_weights``).
"""

from __future__ import annotations

import torch

from nas.strategies.samplers.base import Mixing, Sampler


class SigmoidSampler(Sampler):
    """Mixing weights ``σ(α)`` per op, every op computed; probabilities σ(α) (not normalised)."""

    # The weights are independent per op, not a distribution over an edge's ops: the report
    # centres its heatmaps on NEUTRAL_WEIGHT and takes the entropy of each normalised row.
    independent_weights = True
    neutral_weight = 0.5  # σ(0): an α that no gradient has moved

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        return Mixing({k: torch.sigmoid(a) for k, a in alphas.items()})

    def probabilities(self, alphas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: torch.sigmoid(a.detach().float()) for k, a in alphas.items()}
