"""DARTS-' auxiliary skip connection (Chu, Wang, Zhang, Zhang, Wei, Yan, "DARTS-: Robustly
Stepping out of Performance Collapse Without Indicators", ICLR 2021, sec. 3.2, eq. 4).

Every edge's output gets ``β · skip(x)`` added, with β decayed to zero over the search, so
the skip connection's unfair advantage (its gradient path stabilises training) is given to all
architectures alike early on and removed by the end. β is not an architecture parameter: the
selection uses softmax(α) only (no ``probabilities`` hook here).

**How.** The auxiliary skip is added to the mixing weight of the edge's ``skip_connect``
candidate: ``Σ_k w_k o_k(x) + β·skip(x) = Σ_k (w_k + β·[k = skip]) o_k(x)``. On stride-1
edges (every NAS-Bench-201 edge, every DARTS normal edge, the DARTS reduction edges from
intermediate nodes) ``skip_connect`` is the parameter-free identity, the same function as the
official auxiliary op (``Identity()``), so this is exact. On the stride-2 edges of a DARTS
reduction cell the official code builds a **separate** ``FactorizedReduce(C, C, affine=False)``
for the auxiliary path (Meituan-AutoML/DARTS- src/search/model_search.py ``MixedOp``); here the
β path goes through the ``skip_connect`` candidate's own ``FactorizedReduce`` (same
construction, same ``affine=False``, but shared weights), which keeps the supernet untouched.

**Schedule** (the official ``DecayScheduler``, src/utils.py, ``--decay linear``): at the start
of epoch e, ``β = β0 · (T − e) / T`` (T = the number of search epochs; β0 = ``--skip_beta``
= 1). The last search epoch (e = T − 1) runs with β0 / T and β reaches 0 at e = T, i.e. once the
search is over. ``decay="cosine"``: ``β0 · (1 + cos(π e / T)) / 2``, the code's other option.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from nas.strategies.protocols import Mixing, Modifier, SearchState

SKIP = "skip_connect"
DECAYS = ("linear", "cosine")


def beta_schedule(epoch: int, max_epochs: int, beta0: float = 1.0, decay: str = "linear") -> float:
    """β at the start of ``epoch`` of ``max_epochs`` (0 from ``max_epochs`` on)."""
    if decay not in DECAYS:
        raise ValueError(f"Unknown DARTS- decay {decay!r}. Valid choices are: {', '.join(DECAYS)}.")
    t = min(max(epoch / max(max_epochs, 1), 0.0), 1.0)
    if decay == "linear":
        return beta0 * (1.0 - t)
    return beta0 * (1.0 + math.cos(math.pi * t)) / 2.0


class AuxiliarySkip(Modifier):
    """Adds ``β`` to every edge's ``skip_connect`` mixing weight (all cell types, every pass:
    arch step, weight step and validation, as the official ``MixedOp.forward``).

    Args:
        beta: initial β (the official ``--skip_beta``, 1).
        decay: ``linear`` (the official recipe, ``--decay linear``) or ``cosine``.
    """

    def __init__(self, beta: float = 1.0, decay: str = "linear"):
        beta_schedule(0, 1, beta, decay)  # validates ``decay``
        self.beta0 = float(beta)
        self.decay = decay
        self.beta = float(beta)
        self.skip_index: int | None = None

    def setup(self, seed: int = 0, space=None, **_: Any) -> None:
        if space is None:
            return
        if SKIP not in space.ops:
            raise ValueError(
                f"DARTS-' auxiliary skip adds β to the {SKIP!r} candidate, but search space "
                f"{space.name!r} has ops {list(space.ops)}. It applies to spaces with a "
                f"{SKIP!r} op on every edge (darts, nb201; keep {SKIP!r} in search_space.ops)."
            )
        self.skip_index = list(space.ops).index(SKIP)

    def on_epoch_start(self, epoch: int, max_epochs: int, state: SearchState | None = None) -> None:
        self.beta = beta_schedule(epoch, max_epochs, self.beta0, self.decay)

    def mixing(self, mix: Mixing, arch: dict[str, torch.Tensor]) -> Mixing:
        if self.beta == 0.0:
            return mix
        if self.skip_index is None:
            raise ValueError("AuxiliarySkip needs setup(space=...) before mixing.")
        k = self.skip_index
        for cell, w in mix.weights.items():
            bump = torch.zeros(w.shape[-1], dtype=w.dtype, device=w.device)
            bump[k] = self.beta
            mix.weights[cell] = w + bump  # out of place: w may be part of α's graph
            if mix.active is not None and mix.active.get(cell) is not None:
                # The auxiliary path always runs (single-path samplers restrict the ops).
                mix.active[cell] = [a if a is None or k in a else [*a, k] for a in mix.active[cell]]
        return mix

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state.get("beta", self.beta))
