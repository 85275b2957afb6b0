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
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.strategies.modifiers.op_pruning import ProgressivePruning
from supernet.mixed import MixedOp, resize_optimizer_state


class ProgressiveLearning(ProgressivePruning):
    """Stages with partial-channel K ``ks[i]``; before stage ``i + 1`` (at epoch
    ``switch_epochs[i]``) each edge is pruned to its top ``keep[i]`` ops and K becomes ``ks[i+1]``.

    Args:
        ks: K per stage (DrNAS: 6, 3).
        keep: ops kept per edge at each switch (DrNAS: 4).
        switch_epochs: the epoch each later stage starts at (DrNAS: 25 of 50).
    """

    def __init__(
        self,
        ks: Sequence[int] = (6, 3),
        keep: Sequence[int] = (4,),
        switch_epochs: Sequence[int] = (25,),
    ):
        if not (len(ks) == len(keep) + 1 == len(switch_epochs) + 1) or min(ks) < 1:
            raise ValueError(
                "ProgressiveLearning needs one K per stage and one keep and switch epoch per "
                f"switch, got ks={list(ks)}, keep={list(keep)}, switch_epochs={list(switch_epochs)}."
            )
        if list(switch_epochs) != sorted(switch_epochs):
            raise ValueError(f"switch_epochs must increase, got {list(switch_epochs)}.")
        super().__init__(at=[0.0] * len(keep), keep=keep)
        self.ks, self.switch_epochs = list(ks), list(switch_epochs)
        self.k = self.ks[0]

    def supernet_options(self) -> dict[str, int]:
        return {"partial_channels": self.ks[0]}

    def on_epoch_start(self, epoch: int, max_epochs: int, module) -> None:
        for i, (start, keep) in enumerate(zip(self.switch_epochs, self.keep)):
            if i not in self.done and epoch >= start:
                self.prune(module.probabilities(), keep)
                module.arch.op_masks = dict(self.masks)  # written to alphas.json
                self.done.append(i)
                self.set_k(module, self.ks[i + 1])

    def set_k(self, module, k: int, optimizer: bool = True) -> None:
        """Sets K on every mixed op of ``module.supernet``; resizes the optimizer state."""
        self.k = k
        resized = []
        for m in module.supernet.modules():
            if isinstance(m, MixedOp):
                resized += m.set_partial_channels(k)
        if resized and optimizer:
            resize_optimizer_state(module.weight_optimizer, resized)

    def restore(self, module) -> None:
        """On resume: rebuilds the current stage's K before the checkpoint's weights and
        optimizer state (already of the new shapes) are loaded."""
        if self.masks:
            module.arch.op_masks = dict(self.masks)
        self.set_k(module, self.k, optimizer=False)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "k": self.k}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.k = state.get("k", self.ks[0])
