"""Layer, input and depth choices: ``LayerChoice``, ``InputChoice`` and ``Repeat``.

In the supernet each computes the choices its decision's mixing weights name and sums them
weighted (``Σ_k w_k · candidate_k(x)``: DARTS' mixed op for all choices, one term for a
sampled path); the fixed model holds only the chosen module.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from supernet.choices.base import Assignment, ChoiceModule, leaf_mixture
from supernet.choices.decision import ChoiceError, Decision
from supernet.choices.values import ValueChoice

REDUCTIONS = ("sum", "mean", "concat")


def _check_label(owner: str, label: str | None) -> None:
    if label is not None and (not isinstance(label, str) or not label):
        raise ChoiceError(f"{owner}: a label must be a non-empty string, got {label!r}.")


def _weighted_sum(
    terms: list[tuple[torch.Tensor, torch.Tensor | None]], owner: str
) -> torch.Tensor:
    shapes = {tuple(t.shape) for t, _ in terms}
    if len(shapes) > 1:
        raise ChoiceError(
            f"{owner}: its choices return tensors of different shapes {sorted(shapes)}; a mixed "
            "or shared choice needs every choice to return the same shape."
        )
    out = None
    for t, w in terms:
        t = t if w is None else t * w
        out = t if out is None else out + t
    return out


class LayerChoice(ChoiceModule):
    """One of several candidate modules, chosen by the search.

    Args:
        candidates: a dict name → module, or a list of modules (named ``"0"``, ``"1"``, ...).
            Every candidate takes the same inputs and returns the same shape.
        label: the decision's name; layer choices with the same label share one decision
            (they must name the same candidates). Default: the module's path in the model.
    """

    def __init__(
        self, candidates: Mapping[str, nn.Module] | Sequence[nn.Module], label: str | None = None
    ):
        super().__init__()
        _check_label("LayerChoice", label)
        if isinstance(candidates, Mapping):
            named = dict(candidates)
        else:
            named = {str(i): m for i, m in enumerate(candidates)}
        if not named:
            raise ChoiceError(f"LayerChoice(label={label!r}) needs at least one candidate.")
        bad = {k: type(m).__name__ for k, m in named.items() if not isinstance(m, nn.Module)}
        if bad:
            raise ChoiceError(
                f"LayerChoice(label={label!r}): candidates must be nn.Modules, got {bad}."
            )
        self.candidates = nn.ModuleDict(named)
        self.label = label
        self.decision = Decision(label or "", "layer", tuple(named))

    def own_decision(self) -> Decision:
        return self.decision

    def bind(self, decision: Decision) -> None:
        self.decision = decision

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        modules = list(self.candidates.values())
        terms = [(modules[k](*args, **kwargs), w) for k, w in self.decision.mixture()]
        if len(terms) == 1 and terms[0][1] is None:
            return terms[0][0]
        return _weighted_sum(terms, f"LayerChoice {self.decision.label!r}")

    def fixed(self, assignment: Assignment, inherit: bool) -> nn.Module:
        if self.decision.label not in assignment:
            raise ChoiceError(
                f"the architecture has no choice for decision {self.decision.label!r}."
            )
        return list(self.candidates.values())[assignment[self.decision.label]]


class ChosenInputs(nn.Module):
    """The fixed form of an ``InputChoice``: the chosen inputs, reduced."""

    def __init__(self, indices: Sequence[int], reduction: str):
        super().__init__()
        self.indices, self.reduction = tuple(indices), reduction

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return reduce_inputs([inputs[i] for i in self.indices], self.reduction)


def reduce_inputs(chosen: Sequence[torch.Tensor], reduction: str) -> torch.Tensor:
    if reduction == "concat":
        return torch.cat(list(chosen), dim=1)
    out = chosen[0]
    for t in chosen[1:]:
        out = out + t
    return out / len(chosen) if reduction == "mean" else out


class InputChoice(ChoiceModule):
    """``n_chosen`` of ``n_candidates`` inputs, reduced by ``reduction`` (sum, mean, or concat
    along dim 1). Its decision's choices are the ``C(n, k)`` input subsets (one α column
    each), so every strategy searches it as it searches a layer choice; ``forward`` takes the
    list of candidate inputs."""

    def __init__(
        self, n_candidates: int, n_chosen: int = 1, reduction: str = "sum", label: str | None = None
    ):
        super().__init__()
        _check_label("InputChoice", label)
        if not (
            isinstance(n_candidates, int)
            and isinstance(n_chosen, int)
            and 1 <= n_chosen <= n_candidates
        ):
            raise ChoiceError(
                f"InputChoice(n_candidates={n_candidates!r}, n_chosen={n_chosen!r}): needs integers "
                "with 1 <= n_chosen <= n_candidates."
            )
        if reduction not in REDUCTIONS:
            raise ChoiceError(
                f"InputChoice: reduction={reduction!r} is not valid; valid choices are: "
                f"{', '.join(REDUCTIONS)}."
            )
        self.n_candidates, self.n_chosen, self.reduction, self.label = (
            n_candidates,
            n_chosen,
            reduction,
            label,
        )
        subsets = tuple(itertools.combinations(range(n_candidates), n_chosen))
        self.decision = Decision(label or "", "input", subsets)

    def own_decision(self) -> Decision:
        return self.decision

    def bind(self, decision: Decision) -> None:
        self.decision = decision

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != self.n_candidates:
            raise ChoiceError(
                f"InputChoice {self.decision.label!r} takes {self.n_candidates} inputs, got {len(inputs)}."
            )
        terms = [
            (reduce_inputs([inputs[i] for i in self.decision.choices[k]], self.reduction), w)
            for k, w in self.decision.mixture()
        ]
        if len(terms) == 1 and terms[0][1] is None:
            return terms[0][0]
        return _weighted_sum(terms, f"InputChoice {self.decision.label!r}")

    def fixed(self, assignment: Assignment, inherit: bool) -> ChosenInputs:
        if self.decision.label not in assignment:
            raise ChoiceError(
                f"the architecture has no choice for decision {self.decision.label!r}."
            )
        return ChosenInputs(self.decision.choices[assignment[self.decision.label]], self.reduction)


class Repeat(ChoiceModule):
    """``depth`` blocks in sequence, ``depth`` an int or a value choice: the supernet holds the
    largest depth; under mixing weights the output is ``Σ_d w_d · h_d`` (the α-weighted outputs
    after d blocks, TangleNAS' depth mixing), a sampled depth runs its first d blocks.

    Args:
        blocks: a function block index → module, or a list of the largest depth's modules.
        depth: int or ``ValueChoice`` of depths (each between 0 and the number of blocks).
    """

    def __init__(
        self, blocks: Callable[[int], nn.Module] | Sequence[nn.Module], depth: int | ValueChoice
    ):
        super().__init__()
        values = depth.values if isinstance(depth, ValueChoice) else (depth,)
        if not isinstance(depth, (int, ValueChoice)) or isinstance(depth, bool):
            raise ChoiceError(f"Repeat: depth must be an int or a ValueChoice, got {depth!r}.")
        if any(not isinstance(d, int) or d < 0 for d in values):
            raise ChoiceError(f"Repeat: depths must be integers >= 0, got {list(values)}.")
        n = max(values)
        mods = [blocks(i) for i in range(n)] if callable(blocks) else list(blocks)
        if len(mods) < n:
            raise ChoiceError(f"Repeat: depth up to {n} needs {n} blocks, got {len(mods)}.")
        self.blocks = nn.ModuleList(mods[:n])
        self.depth = depth

    def value_args(self) -> dict[str, Any]:
        return {"depth": self.depth}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.depth, ValueChoice):
            for block in self.blocks:
                x = block(x)
            return x
        wanted = leaf_mixture(self.depth)
        deepest = max(d for d, _ in wanted)
        outs = {0: x}
        h = x
        for i in range(deepest):
            h = self.blocks[i](h)
            outs[i + 1] = h
        terms = [(outs[d], w) for d, w in wanted]
        if len(terms) == 1 and terms[0][1] is None:
            return terms[0][0]
        return _weighted_sum(terms, f"Repeat {self.depth.label!r}")

    def fixed(self, assignment: Assignment, inherit: bool) -> nn.Sequential:
        if isinstance(self.depth, ValueChoice):
            if self.depth.label not in assignment:
                raise ChoiceError(
                    f"the architecture has no choice for decision {self.depth.label!r}."
                )
            d = self.depth.values[assignment[self.depth.label]]
        else:
            d = self.depth
        return nn.Sequential(*list(self.blocks)[:d])
