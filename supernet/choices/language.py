"""Language-model primitives: a token ``Embedding`` and causal ``GroupedQueryAttention`` whose
sizes may be value choices, and rotary position embeddings.

``Embedding(num_embeddings, embedding_dim)``: the supernet holds the table at the largest width,
a choice uses its first features (as AutoFormer / whittle slice embeddings), features beyond the
choice are zero.

``GroupedQueryAttention(embed_dim, num_heads, query_groups, head_size, ...)``: causal
self-attention with ``num_heads`` query heads sharing ``query_groups`` key/value heads (GQA:
Ainslie et al., EMNLP 2023; ``query_groups == num_heads`` is multi-head attention, 1 is
multi-query), each ``head_size`` wide. A choice uses the first query heads and the first
key/value groups of the largest projections (whittle's and HW-GPT-Bench's slicing); every
choice of groups must divide every choice of heads. Rotary position embeddings (RoPE: Su et al.,
2021; the half-split rotation of GPT-NeoX / LitGPT) rotate queries and keys when the position
decision says so. Attention is not linear in its weights: under mixing weights the output is the
α-weighted sum of the joint choices' outputs; a one-hot choice equals the plain
``CausalSelfAttention`` of that size with the sliced weights.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from supernet.choices.attention import sliced_attention
from supernet.choices.base import (
    Assignment,
    ChoiceModule,
    all_values,
    fixed_values,
    joint_mixture,
    require_sizes,
)
from supernet.choices.decision import ChoiceError, Decision
from supernet.choices.layers import prefix, superpose
from supernet.choices.values import largest

POSITIONS = ("learned", "rope", "none")


class CausalSelfAttention(nn.Module):
    """Plain causal grouped-query self-attention (the fixed form) on ``[batch, tokens, embed]``."""

    def __init__(
        self, embed_dim: int, heads: int, groups: int, head_size: int, bias: bool, rope: bool
    ):
        super().__init__()
        self.heads, self.groups, self.head_size, self.rope = heads, groups, head_size, rope
        self.head_dim = head_size  # as Attention's: the MACs counter reads heads x head_dim
        self.q = nn.Linear(embed_dim, heads * head_size, bias=bias)
        self.k = nn.Linear(embed_dim, groups * head_size, bias=bias)
        self.v = nn.Linear(embed_dim, groups * head_size, bias=bias)
        self.out = nn.Linear(heads * head_size, embed_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sliced_attention(
            x,
            self.q,
            self.k,
            self.v,
            self.out,
            self.heads,
            self.groups,
            self.head_size,
            x.shape[-1],
            causal=True,
            rope=self.rope,
        )


class GroupedQueryAttention(ChoiceModule):
    """Causal GQA whose ``embed_dim``, ``num_heads`` and ``query_groups`` may be value choices
    (module docstring); ``positions``: the position decision's module (``PositionChoice``)
    whose ``rope`` choice rotates queries and keys, or None (no rotary)."""

    def __init__(
        self,
        embed_dim: Any,
        num_heads: Any,
        query_groups: Any,
        head_size: int,
        bias: bool = True,
        positions: PositionChoice | None = None,
    ):
        super().__init__()
        self._values = {
            "embed_dim": embed_dim,
            "num_heads": num_heads,
            "query_groups": query_groups,
        }
        self.check()
        self.head_size, self.use_bias = head_size, bias
        self._positions = [positions]  # a list: not a submodule (it lives elsewhere)
        E = largest(embed_dim)
        H, G = largest(num_heads), largest(query_groups)
        ref = CausalSelfAttention(E, H, G, head_size, bias, False)
        self.q, self.k, self.v, self.out = ref.q, ref.k, ref.v, ref.out

    def value_args(self) -> dict[str, Any]:
        return dict(self._values)

    def check(self) -> None:
        require_sizes("GroupedQueryAttention", self._values, tuple(self._values))
        for v in all_values(self._values):
            if v["num_heads"] % v["query_groups"]:
                raise ChoiceError(
                    f"GroupedQueryAttention: query_groups={self._values['query_groups']!r} does "
                    f"not divide num_heads={self._values['num_heads']!r} at {v['query_groups']} "
                    f"groups and {v['num_heads']} heads; every choice of groups must divide "
                    "every choice of heads."
                )

    def _rope_mixture(self) -> list[tuple[bool, torch.Tensor | None]]:
        positions = self._positions[0]
        if positions is None:
            return [(False, None)]
        d = positions.decision
        return [(d.choices[k] == "rope", w) for k, w in d.mixture()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        E = self.out.weight.shape[0]
        total = None
        ropes = self._rope_mixture()
        for v, coef in joint_mixture(self._values):
            for rope, w in ropes:
                y = sliced_attention(x, self.q, self.k, self.v, self.out, v["num_heads"],
                                     v["query_groups"], self.head_size, v["embed_dim"],
                                     causal=True, rope=rope)  # fmt: skip
                if v["embed_dim"] < E:
                    y = F.pad(y, (0, E - v["embed_dim"]))
                for factor in (coef, w):
                    if factor is not None:
                        y = y * factor
                total = y if total is None else total + y
        return total

    def fixed(self, assignment: Assignment, inherit: bool) -> CausalSelfAttention:
        v = fixed_values(self._values, assignment)
        e, h, g, hs = v["embed_dim"], v["num_heads"], v["query_groups"], self.head_size
        positions = self._positions[0]
        rope = positions is not None and positions.chosen(assignment) == "rope"
        out = CausalSelfAttention(e, h, g, hs, self.use_bias, rope)
        if inherit:
            with torch.no_grad():
                for name, rows in (("q", h * hs), ("k", g * hs), ("v", g * hs)):
                    src, dst = getattr(self, name), getattr(out, name)
                    dst.weight.copy_(src.weight[:rows, :e])
                    if src.bias is not None:
                        dst.bias.copy_(src.bias[:rows])
                out.out.weight.copy_(self.out.weight[:e, : h * hs])
                if self.out.bias is not None:
                    out.out.bias.copy_(self.out.bias[:e])
        return out.to(self.out.weight.device)


def token_table(num_embeddings: int, embedding_dim: int) -> nn.Embedding:
    """A token embedding initialised as GPT-2's (normal, std 0.02; torch's default std 1 makes a
    tied head's initial logits ~50x too large)."""
    table = nn.Embedding(num_embeddings, embedding_dim)
    nn.init.normal_(table.weight, std=0.02)
    return table


class Embedding(ChoiceModule):
    """``nn.Embedding`` whose ``embedding_dim`` may be a value choice (module docstring)."""

    def __init__(self, num_embeddings: int, embedding_dim: Any):
        super().__init__()
        self._values = {"embedding_dim": embedding_dim}
        self.check()
        self.weight = token_table(num_embeddings, largest(embedding_dim)).weight

    def value_args(self) -> dict[str, Any]:
        return dict(self._values)

    def check(self) -> None:
        require_sizes("Embedding", self._values, ("embedding_dim",))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        E = self.weight.shape[1]
        m = superpose(
            self._values, self.weight, lambda v: prefix(v["embedding_dim"], E, self.weight)
        )
        return F.embedding(ids, self.weight) * m

    def fixed(self, assignment: Assignment, inherit: bool) -> nn.Embedding:
        e = fixed_values(self._values, assignment)["embedding_dim"]
        out = token_table(self.weight.shape[0], e)
        if inherit:
            with torch.no_grad():
                out.weight.copy_(self.weight[:, :e])
        return out.to(self.weight.device)


class LearnedPositions(nn.Module):
    """Plain learned absolute positions added to ``[batch, tokens, embed]``."""

    def __init__(self, context: int, embed_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(context, embed_dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight[: x.shape[1]]


class NoPositions(nn.Module):
    """No absolute positions (rotary or none): the identity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class PositionChoice(ChoiceModule):
    """The position-encoding decision (``learned``, ``rope``, ``none``, a subset): adds learned
    positions (their width entangled with ``embed_dim``) where ``learned`` is chosen; the
    attention modules given this module rotate queries and keys where ``rope`` is."""

    def __init__(self, context: int, embed_dim: Any, choices: tuple[str, ...], label: str):
        super().__init__()
        bad = [c for c in choices if c not in POSITIONS]
        if not choices or bad:
            raise ChoiceError(
                f"positions {list(choices)}: valid choices are {', '.join(POSITIONS)}."
            )
        self._values = {"embed_dim": embed_dim}
        self.check()
        self.context, self.label = context, label
        self.decision = Decision(label, "layer", tuple(choices))
        self.weight = LearnedPositions(context, largest(embed_dim)).weight

    def value_args(self) -> dict[str, Any]:
        return dict(self._values)

    def own_decision(self) -> Decision:
        return self.decision

    def bind(self, decision: Decision) -> None:
        self.decision = decision

    def check(self) -> None:
        require_sizes("PositionChoice", self._values, ("embed_dim",))

    def chosen(self, assignment: Assignment) -> str:
        return self.decision.choices[assignment[self.decision.label]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        E = self.weight.shape[1]
        m = superpose(self._values, self.weight, lambda v: prefix(v["embed_dim"], E, self.weight))
        learned = x + self.weight[: x.shape[1]] * m
        total = None
        for k, w in self.decision.mixture():
            y = learned if self.decision.choices[k] == "learned" else x
            y = y if w is None else y * w
            total = y if total is None else total + y
        return total

    def fixed(self, assignment: Assignment, inherit: bool) -> nn.Module:
        if self.chosen(assignment) != "learned":
            return NoPositions()
        e = fixed_values(self._values, assignment)["embed_dim"]
        out = LearnedPositions(self.context, e)
        if inherit:
            with torch.no_grad():
                out.weight.copy_(self.weight[:, :e])
        return out.to(self.weight.device)
