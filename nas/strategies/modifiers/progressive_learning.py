"""DrNAS' progressive learning (Chen, Wang, Cheng, Tang, Hsieh, "DrNAS: Dirichlet Neural
Architecture Search", ICLR 2021, sec. 3.3).

The search runs in stages. The first stage uses partial channel connections with a large K
(6: a sixth of each edge's channels goes through the candidate ops) and the full op space;
at each stage switch every edge keeps only its top ops by the Dirichlet mean (the strategy's
probabilities; pruned ops are no longer computed) and K is lowered (6 → 3), so the smaller op
space is searched on wider edges. The switch happens at the start of the configured epoch
(25 of 50 on CIFAR-10). K is changed in place on every mixed op
(``MixedOp.set_partial_channels``): the widened candidates keep their parameter objects and
learned values, and the weight optimizer's state is resized to match.

Each stage begins with ``warmup`` epochs of weight-only training (α frozen): the official
code's ``if epoch >= 10: architect.step(...)`` counts epochs within the stage
(xiangning-chen/DrNAS, ``DARTS-space/train_search.py`` and
``201-space/train_search_progressive.py``, ``train(..., e)``), so α is frozen at epochs 0-9
and again at 25-34 of the CIFAR-10 search.
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.strategies.modifiers.op_pruning import ProgressivePruning
from nas.strategies.protocols import SearchState
from supernet.mixed import MixedOp, check_partial_channels, resize_optimizer_state


class ProgressiveLearning(ProgressivePruning):
    """Stages with partial-channel K ``ks[i]``; before stage ``i + 1`` (at epoch
    ``switch_epochs[i]``) each edge is pruned to its top ``keep[i]`` ops and K becomes ``ks[i+1]``.

    Args:
        ks: K per stage (DrNAS, DARTS space: 6, 4; NAS-Bench-201: 4, 2).
        keep: ops kept per edge at each switch (DARTS space: 4; NAS-Bench-201: 3).
        switch_epochs: the epoch each later stage starts at (DARTS space: 25 of 50;
            NAS-Bench-201: 50 of 100).
        warmup: epochs at the start of every stage in which α is not updated (DrNAS: 10).
    """

    def __init__(
        self,
        ks: Sequence[int] = (6, 4),
        keep: Sequence[int] = (4,),
        switch_epochs: Sequence[int] = (25,),
        warmup: int = 0,
    ):
        if not (len(ks) == len(keep) + 1 == len(switch_epochs) + 1) or min(ks) < 1:
            raise ValueError(
                "ProgressiveLearning needs one K per stage and one keep and switch epoch per "
                f"switch, got ks={list(ks)}, keep={list(keep)}, switch_epochs={list(switch_epochs)}."
            )
        if list(switch_epochs) != sorted(switch_epochs):
            raise ValueError(f"switch_epochs must increase, got {list(switch_epochs)}.")
        if warmup < 0:
            raise ValueError(f"ProgressiveLearning warmup must be >= 0 epochs, got {warmup}.")
        super().__init__(at=[0.0] * len(keep), keep=keep)
        self.ks, self.switch_epochs = list(ks), list(switch_epochs)
        self.k = self.ks[0]
        self.warmup = warmup

    def stage_start(self, epoch: int) -> int:
        """The first epoch of the stage that ``epoch`` belongs to."""
        return max([0, *(s for s in self.switch_epochs if s <= epoch)])

    def updates_arch(self, epoch: int) -> bool:
        """False during the first ``warmup`` epochs of each stage."""
        return epoch - self.stage_start(epoch) >= self.warmup

    def supernet_options(self) -> dict[str, int]:
        return {"partial_channels": self.ks[0]}

    def check_supernet(self, supernet) -> None:
        for k in self.ks[1:]:
            check_partial_channels(supernet, k)

    def on_epoch_start(self, epoch: int, max_epochs: int, state: SearchState) -> None:
        for i, (start, keep) in enumerate(zip(self.switch_epochs, self.keep)):
            if i not in self.done and epoch >= start:
                self.prune(state.probabilities(), keep)
                state.arch.op_masks = dict(self.masks)  # written to alphas.json
                self.done.append(i)
                self.set_k(state, self.ks[i + 1])

    def set_k(self, state: SearchState, k: int, optimizer: bool = True) -> None:
        """Sets K on every mixed op of ``state.supernet``; resizes the optimizer state."""
        self.k = k
        resized = []
        for m in state.supernet.modules():
            if isinstance(m, MixedOp):
                resized += m.set_partial_channels(k)
        if resized and optimizer:
            resize_optimizer_state(state.weight_optimizer, resized)

    def restore(self, state: SearchState) -> None:
        """On resume: rebuilds the current stage's K before the checkpoint's weights and
        optimizer state (already of the new shapes) are loaded."""
        if self.masks:
            state.arch.op_masks = dict(self.masks)
        self.set_k(state, self.k, optimizer=False)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "k": self.k}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.k = state.get("k", self.ks[0])
