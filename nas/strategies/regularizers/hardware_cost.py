"""Hardware-cost penalties on the supernet's expected latency, multiply-adds or parameters.

``E[cost] = fixed + Σ_rows Σ_ops p(row, op) · cost(row, op)`` (``nas/hardware/costs.py``), with
p = softmax(α) per row (pruned ops excluded), computed here from the α given, so the penalty
is differentiable in α whatever the sampler mixes with. Three forms:

- ``additive``: ``loss + weight · E[cost] / target`` (``weight · E[cost]`` without a target);
  ProxylessNAS' ``add#linear`` has the same gradient, λ (E − T) / T.
- ``multiplicative`` (ProxylessNAS, Cai, Zhu, Han, ICLR 2019; official code
  mit-han-lab/proxylessnas ``search/nas_manager.py``, ``reg_loss_type='mul#log'``):
  ``weight · CE · (log E[cost] / log target)^beta``; the code's defaults
  (``imagenet_arch_search.py``) are α = 0.2, β = 0.3.
- ``fbnet`` (FBNet, Wu et al., CVPR 2019, eq. 2): ``weight · CE · (log E[LAT])^beta``, with
  α = 0.2, β = 0.6 and LAT in ms of the target device (sec. 4.1).

The logarithmic forms need a positive log: a cost below 1 (e.g. a sub-millisecond CPU latency
of a tiny test network) is clamped, with a warning, which makes the factor flat there.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from nas.core.arch import split_arch
from nas.core.log import get_logger
from nas.hardware.costs import KINDS, CostModel, row_probabilities, space_cost_model
from nas.strategies.protocols import ObjectiveRegularizer

log = get_logger(__name__)

FORMS = ("additive", "multiplicative", "fbnet")
# Repeats of an on-the-fly latency measurement (no table given): quick, for tests and demos.
QUICK_REPEATS, QUICK_WARMUP = 5, 2


class HardwareCost(ObjectiveRegularizer):
    """A penalty on the expected hardware cost; see the module docstring.

    Args:
        kind: ``latency`` (ms, from a latency table), ``macs`` or ``params``.
        form: ``additive``, ``multiplicative`` (ProxylessNAS) or ``fbnet``.
        weight: λ (additive) or α (the multiplicative forms).
        target: the reference cost T (additive: divides E; multiplicative: log T; required).
        beta: the exponent β of the multiplicative forms.
        table: a ``latency_table.json`` of ``python train.py stage=latency``; None with
            ``kind=latency`` measures the table on the CPU at setup (quick, few repeats; kept
            in checkpoints, so a resumed run keeps it, but two fresh runs time it anew: pass a
            table for runs that must repeat exactly).
    """

    def __init__(
        self,
        kind: str = "latency",
        form: str = "additive",
        weight: float = 0.1,
        target: float | None = None,
        beta: float = 0.6,
        table: str | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"HardwareCost kind must be one of {', '.join(KINDS)}; got {kind!r}.")
        if form not in FORMS:
            raise ValueError(f"HardwareCost form must be one of {', '.join(FORMS)}; got {form!r}.")
        if target is not None and target <= 0:
            raise ValueError(f"HardwareCost target must be positive, got {target}.")
        if form == "multiplicative" and (target is None or target == 1):
            raise ValueError(
                "HardwareCost form=multiplicative (ProxylessNAS: CE · (log E / log T)^β) needs a "
                f"target T > 0, T != 1 in the units of kind={kind}; got target={target}."
            )
        self.kind, self.form, self.weight = kind, form, float(weight)
        self.target, self.beta, self.table = target, float(beta), table
        self.cost_model: CostModel | None = None
        self._checked = False  # the one-time check of _log

    def setup(self, seed: int = 0, space=None, **_: Any) -> None:
        if space is None or (self.cost_model is not None and self._space is space):
            return
        cm = space_cost_model(space)
        if self.kind == "latency":
            from nas.hardware import latency

            if self.table:
                latency.attach(cm, self.table)
            else:
                log.info(
                    f"HardwareCost: no latency table (costs.latency_table); timing "
                    f"{len(cm.op_shapes()) + 1} {space.name} entries on the CPU now (python "
                    "train.py stage=latency measures and saves one on the target device)."
                )
                cm.set_latency(latency.measure([cm], "cpu", 1, QUICK_REPEATS, QUICK_WARMUP))
        self.cost_model, self._space = cm, space

    def state_dict(self) -> dict[str, Any]:
        """A latency table timed at setup: its entries, so a resumed run prices ops as the run
        it continues did (a new timing would differ by the machine's noise)."""
        measured = self.kind == "latency" and not self.table and self.cost_model is not None
        return {"latency": dict(self.cost_model.latency)} if measured else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("latency") and self.cost_model is not None:
            self.cost_model.set_latency(state["latency"])

    def expected(
        self, arch: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """E[cost] under softmax(α) per row (``masks``: pruned ops excluded)."""
        if self.cost_model is None:
            raise RuntimeError("HardwareCost needs setup(space=...) before use.")
        alphas, _ = split_arch(arch)
        return self.cost_model.expected(row_probabilities(alphas, masks), self.kind)

    def __call__(self, arch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The additive penalty ``weight · E / target`` (the regularizer contract)."""
        if self.form != "additive":
            raise RuntimeError(
                f"HardwareCost form={self.form} multiplies the cross-entropy: use "
                "combine(loss, arch) (SearchModule.arch_objective does)."
            )
        return self._additive(self.expected(arch))

    def _additive(self, e: torch.Tensor) -> torch.Tensor:
        return self.weight * (e / self.target if self.target is not None else e)

    def _log(self, e: torch.Tensor) -> torch.Tensor:
        log = torch.log(e)
        if self.form == "multiplicative":
            log = log / math.log(self.target)
        # Checked on the first call only: the check reads the value back to the host, which on
        # a GPU would stall every α step; a cost that small is a property of the setup.
        if not self._checked:
            self._checked = True
            if bool(log.detach() <= 0):
                warnings.warn(
                    f"HardwareCost form={self.form}: the log factor of E[{self.kind}]="
                    f"{float(e):.4g} is not positive; it is clamped (the penalty is flat there). "
                    "Costs above 1 (FBNet: latency in ms of the target device) give the paper's "
                    "behaviour.",
                    stacklevel=2,
                )
        return log.clamp_min(1e-6)

    def combine(
        self,
        loss: torch.Tensor,
        arch: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The arch objective with this penalty, given the cross-entropy part ``loss``."""
        e = self.expected(arch, masks)
        if self.form == "additive":
            return loss + self._additive(e)
        return self.weight * loss * self._log(e) ** self.beta
