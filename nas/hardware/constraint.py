"""Hard cost targets for the found architecture (``constraint.latency_ms / macs / params``).

After selection, while the genotype exceeds a target, the choice whose downgrade gives up the
least α-probability per unit of cost saved, ``(p(row, op) − p(row, op')) / (c(op) − c(op'))``,
is replaced by its next cheaper candidate op' on the same row (the most expensive op that is
still cheaper, among the ops the space's selection allows there: mbconv smaller kernel /
expansion or ``zero`` where the layer may be skipped; DARTS any op but ``none``; NAS-Bench-201
any op). When no downgrade is left the run fails, naming the target and the cheapest cost
reachable with the selected edges. Costs are the child network's (``nas/hardware/costs.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional  # noqa: UP035 - OmegaConf needs typing.Optional

import torch

from nas.hardware.costs import CostModel, genotype_choices, with_choice

# constraint.<name> -> cost kind
TARGETS = {"latency_ms": "latency", "macs": "macs", "params": "params"}


class ConstraintError(ValueError):
    """A target the space cannot meet."""


def allowed_ops(space, row: int) -> list[int]:
    """Op indices the space's selection may choose on ``row`` (``space.selectable_ops``)."""
    return list(space.selectable_ops(row))


@dataclass
class ConstraintConfig:
    """The ``constraint`` settings: hard targets the found architecture must meet; null = none
    (``nas.run.schema`` registers this dataclass). After selection, the cheapest-to-give-up
    choices are downgraded until every target is met, or the run fails naming the target and
    the cheapest reachable cost."""

    latency_ms: Optional[float] = None  # noqa: UP045 - needs costs.latency_table
    macs: Optional[float] = None  # noqa: UP045
    params: Optional[float] = None  # noqa: UP045


def targets_of(constraint: ConstraintConfig) -> dict[str, float]:
    """``{name: target}`` of the set targets of the ``constraint`` settings."""
    values = dataclasses.asdict(constraint)
    return {n: float(values[n]) for n in TARGETS if values[n] is not None}


def enforce(
    space,
    genotype,
    probs: dict[str, torch.Tensor],
    cm: CostModel,
    targets: dict[str, float],
) -> tuple[Any, dict[str, Any]]:
    """The genotype downgraded until it meets ``targets``, and a report for summary.json."""
    kinds = {n: TARGETS[n] for n in targets}
    tables = {n: cm.table(k) for n, k in kinds.items()}
    probs = {c: p.detach().double().cpu() for c, p in probs.items()}

    def costs(g) -> dict[str, float]:
        return {n: cm.genotype_cost(space, g, k) for n, k in kinds.items()}

    before = costs(genotype)
    current, downgrades = dict(before), []
    while True:
        violated = [n for n in targets if current[n] > targets[n]]
        if not violated:
            break
        name = violated[0]
        table = tables[name]
        best = None
        for c in genotype_choices(space, genotype):
            t, k = table[c.cell][c.row], space.ops.index(c.op)
            cheaper = [o for o in allowed_ops(space, c.row) if t[o] < t[k]]
            if not cheaper:
                continue
            o = max(cheaper, key=lambda j: (float(t[j]), -j))
            saved = float(t[k] - t[o])
            given_up = float(probs[c.cell][c.row, k] - probs[c.cell][c.row, o])
            score = given_up / saved
            if best is None or score < best[0]:
                best = (score, c, space.ops[o])
        if best is None:
            cheapest = cm.fixed(kinds[name]) + sum(
                min(float(table[c.cell][c.row, o]) for o in allowed_ops(space, c.row))
                for c in genotype_choices(space, genotype)
            )
            raise ConstraintError(
                f"constraint.{name}={targets[name]:g} cannot be met: the cheapest {space.name} "
                f"architecture reachable from the selected one costs {cheapest:.6g} "
                f"({name}; selected: {before[name]:.6g})."
            )
        _, choice, op = best
        genotype = with_choice(space, genotype, choice, op)
        downgrades.append(f"{choice.cell}[{choice.row}]: {choice.op} -> {op}")
        current = costs(genotype)
    report = {
        "targets": dict(targets),
        "met": True,
        "before": before,
        "after": current,
        "downgrades": downgrades,
    }
    return genotype, report
