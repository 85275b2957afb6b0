"""Progressive op pruning, DrNAS' progressive learning (Chen et al., "DrNAS: Dirichlet Neural
Architecture Search", ICLR 2021, sec. 3.3).

At given fractions of the search, each edge keeps only its ``keep`` strongest ops (by the
strategy's probabilities); pruned ops are no longer computed (``Mixing.active``) and the
weights are renormalised over the kept ones (for Dirichlet weights this is exactly the
Dirichlet of the kept concentrations). ``ProgressiveLearning`` adds the paper's change of the
partial-channel K (6 → 3) at the same switch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nas.core.arch import MASK_PREFIX
from nas.strategies.protocols import Mixing, Modifier, SearchState


class ProgressivePruning(Modifier):
    """Keeps the top ``keep[i]`` ops per edge from epoch ``round(at[i] * max_epochs)`` on."""

    def __init__(self, at: Sequence[float] = (0.5,), keep: Sequence[int] = (4,)):
        if len(at) != len(keep) or any(k < 1 for k in keep):
            raise ValueError(
                f"ProgressivePruning needs as many at={list(at)} as keep={list(keep)}."
            )
        self.at, self.keep = list(at), list(keep)
        self.masks: dict[str, torch.Tensor] = {}
        self.done: list[int] = []

    def on_epoch_start(self, epoch: int, max_epochs: int, state: SearchState) -> None:
        for i, (frac, keep) in enumerate(zip(self.at, self.keep)):
            if i not in self.done and epoch >= round(frac * max_epochs):
                self.prune(state.probabilities(), keep)
                state.arch.op_masks = dict(self.masks)  # written to alphas.json
                self.done.append(i)

    def prune(self, probs: dict[str, torch.Tensor], keep: int) -> None:
        for cell, p in probs.items():
            p = p.detach().float().cpu()
            if cell in self.masks:
                p = p.masked_fill(~self.masks[cell], -1.0)
            top = p.topk(min(keep, p.shape[1]), dim=-1).indices
            self.masks[cell] = torch.zeros_like(p, dtype=torch.bool).scatter_(-1, top, True)

    def _mask(self, cell: str, like: torch.Tensor) -> torch.Tensor:
        return self.masks[cell].to(device=like.device, dtype=like.dtype)

    def mixing(self, mix: Mixing, arch: dict[str, torch.Tensor]) -> Mixing:
        if not self.masks:
            return mix
        active = {}
        for cell, w in mix.weights.items():
            masked = w * self._mask(cell, w)
            mix.weights[cell] = masked / masked.sum(-1, keepdim=True).clamp_min(1e-12)
            kept = [torch.nonzero(row).flatten().tolist() for row in self.masks[cell]]
            if mix.active is not None and mix.active.get(cell) is not None:
                kept = [
                    k if a is None else [i for i in a if i in k]
                    for a, k in zip(mix.active[cell], kept)
                ]
            active[cell] = kept
        mix.active = active
        return mix

    def probabilities(self, probs, arch):
        masks = self.masks or {
            k[len(MASK_PREFIX) :]: v for k, v in arch.items() if k.startswith(MASK_PREFIX)
        }
        if not masks:
            return probs
        out = {}
        for cell, p in probs.items():
            masked = p * masks[cell].to(device=p.device, dtype=p.dtype)
            out[cell] = masked / masked.sum(-1, keepdim=True).clamp_min(1e-12)
        return out

    def state_dict(self) -> dict:
        return {"masks": self.masks, "done": self.done}

    def load_state_dict(self, state: dict) -> None:
        self.masks, self.done = dict(state.get("masks", {})), list(state.get("done", []))
