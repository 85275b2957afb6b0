"""Multi-head self-attention whose width and number of heads may be value choices.

``MultiheadAttention(embed_dim, num_heads, head_dim=None)`` over tokens ``[batch, tokens,
embed]``: queries, keys and values are projections to ``num_heads * head_dim`` features (with
``head_dim=None``, ``embed_dim // num_heads``: the heads split the width, which must then divide
it at every choice), scaled dot-product attention per head, and an output projection back to
``embed_dim``. Weight entanglement as in AutoFormer (Chen et al., ICCV 2021): the supernet holds
the projections at the largest sizes, a choice uses the first input features, the first
``heads · head_dim`` projection rows (the first heads) and the first output features. Attention
is not linear in its weights, so under mixing weights the layer sums the α-weighted outputs of
the joint choices (TangleNAS' rule for such ops); a one-hot choice computes only its own, equal
to the plain ``Attention`` of that size (``fixed``) with the sliced weights, zero-padded.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from supernet.choices.base import (
    Assignment,
    ChoiceModule,
    all_values,
    fixed_values,
    joint_mixture,
    require_sizes,
)
from supernet.choices.decision import ChoiceError
from supernet.choices.values import largest


def rotary(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoPE on ``[batch, heads, tokens, head_size]``: each half-split pair (i, i + d/2) rotated
    by the angle ``position · base^(-2i/d)``."""
    d, t = x.shape[-1], x.shape[-2]
    inv = base ** (-torch.arange(0, d // 2, device=x.device, dtype=torch.float32) * 2 / d)
    angles = torch.arange(t, device=x.device, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    a, b = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def _project(layer: nn.Linear, x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``layer`` on ``x[..., :cols]`` with its first ``rows`` outputs; a whole layer is called
    as a module (its forward hooks, e.g. the MACs counter, see it)."""
    if (rows, cols) == (layer.out_features, layer.in_features):
        return layer(x)
    bias = None if layer.bias is None else layer.bias[:rows]
    return F.linear(x, layer.weight[:rows, :cols], bias)


def sliced_attention(
    x, q, k, v, out, heads: int, groups: int, hs: int, e: int, causal: bool, rope: bool = False
) -> torch.Tensor:
    """Self-attention of ``x[..., :e]`` with the first rows / columns of the projections:
    ``heads`` query heads of ``hs`` features sharing ``groups`` key/value heads (``groups ==
    heads``: multi-head attention), causal or not, queries and keys rotated with ``rope``. The
    one attention computation of every attention module here, plain or entangled."""
    b, t, _ = x.shape
    x = x[..., :e]
    qh = _project(q, x, heads * hs, e).reshape(b, t, heads, hs).transpose(1, 2)
    kh = _project(k, x, groups * hs, e).reshape(b, t, groups, hs).transpose(1, 2)
    vh = _project(v, x, groups * hs, e).reshape(b, t, groups, hs).transpose(1, 2)
    if rope:
        qh, kh = rotary(qh), rotary(kh)
    if groups != heads:  # each group's key/value serves heads // groups consecutive heads
        kh = kh.repeat_interleave(heads // groups, dim=1)
        vh = vh.repeat_interleave(heads // groups, dim=1)
    o = F.scaled_dot_product_attention(qh, kh, vh, is_causal=causal)
    return _project(out, o.transpose(1, 2).reshape(b, t, heads * hs), e, heads * hs)


class Attention(nn.Module):
    """Plain multi-head self-attention (the fixed form): ``heads`` heads of ``head_dim``
    features, input and output ``embed_dim``; ``forward(x)`` on ``[batch, tokens, embed]``."""

    def __init__(self, embed_dim: int, heads: int, head_dim: int, bias: bool = True):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.q = nn.Linear(embed_dim, inner, bias=bias)
        self.k = nn.Linear(embed_dim, inner, bias=bias)
        self.v = nn.Linear(embed_dim, inner, bias=bias)
        self.out = nn.Linear(inner, embed_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, d = self.heads, self.head_dim
        return sliced_attention(x, self.q, self.k, self.v, self.out, h, h, d, x.shape[-1], False)


def _head_dim(values: dict[str, Any]) -> int:
    if values["head_dim"] is not None:
        return values["head_dim"]
    return values["embed_dim"] // values["num_heads"]


class MultiheadAttention(ChoiceModule):
    """Multi-head self-attention whose ``embed_dim``, ``num_heads`` and ``head_dim`` may be
    value choices (module docstring); ``forward(x)`` on ``[batch, tokens, embed]``, ``x`` at the
    largest width."""

    def __init__(self, embed_dim: Any, num_heads: Any, head_dim: Any = None, bias: bool = True):
        super().__init__()
        self._values = {"embed_dim": embed_dim, "num_heads": num_heads, "head_dim": head_dim}
        self.check()
        self.use_bias = bias
        E = largest(embed_dim)
        inner = max(v["num_heads"] * _head_dim(v) for v in all_values(self._values))
        ref = Attention(E, 1, inner, bias=bias)  # one layer's initialisation at the largest sizes
        self.q, self.k, self.v, self.out = ref.q, ref.k, ref.v, ref.out

    def value_args(self) -> dict[str, Any]:
        return dict(self._values)

    def check(self) -> None:
        require_sizes(
            "MultiheadAttention",
            {k: v for k, v in self._values.items() if v is not None},
            tuple(k for k, v in self._values.items() if v is not None),
        )
        if self._values["head_dim"] is None:
            for v in all_values(self._values):
                if v["embed_dim"] % v["num_heads"]:
                    raise ChoiceError(
                        f"MultiheadAttention: num_heads={self._values['num_heads']!r} does not "
                        f"divide embed_dim={self._values['embed_dim']!r} at {v['num_heads']} "
                        f"heads and width {v['embed_dim']}; the heads split the width, so every "
                        "choice of heads must divide every width (or give head_dim)."
                    )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        E = self.out.weight.shape[0]
        if x.shape[-1] != E:
            raise ChoiceError(
                f"MultiheadAttention: the input has {x.shape[-1]} features; embed_dim="
                f"{self._values['embed_dim']!r} needs its largest value, {E}."
            )
        total = None
        for v, coef in joint_mixture(self._values):
            h, e = v["num_heads"], v["embed_dim"]
            y = sliced_attention(x, self.q, self.k, self.v, self.out, h, h, _head_dim(v), e, False)
            if v["embed_dim"] < E:
                y = F.pad(y, (0, E - v["embed_dim"]))
            y = y if coef is None else y * coef
            total = y if total is None else total + y
        return total

    def fixed(self, assignment: Assignment, inherit: bool) -> Attention:
        v = fixed_values(self._values, assignment)
        e, heads, d = v["embed_dim"], v["num_heads"], _head_dim(v)
        out = Attention(e, heads, d, bias=self.use_bias)
        if inherit:
            inner = heads * d
            with torch.no_grad():
                for name in ("q", "k", "v"):
                    src, dst = getattr(self, name), getattr(out, name)
                    dst.weight.copy_(src.weight[:inner, :e])
                    if src.bias is not None:
                        dst.bias.copy_(src.bias[:inner])
                out.out.weight.copy_(self.out.weight[:e, :inner])
                if self.out.bias is not None:
                    out.out.bias.copy_(self.out.bias[:e])
        return out.to(self.out.weight.device)
