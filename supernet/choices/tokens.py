"""A ViT's class token and learned positions, their width a value choice.

``ClassTokenPositions(num_tokens, embed_dim)`` prepends a learned class token to ``[batch,
num_tokens, embed]`` patch tokens and adds learned position embeddings (ViT: Dosovitskiy et
al., ICLR 2021). Entangled like the layers: the supernet holds both at the largest width, a
choice uses their first features; features beyond a choice's width are zero (the patch tokens'
already are), so at a one-hot choice the output equals the plain ``TokenPositions`` of that
width with the sliced parameters, zero-padded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from supernet.choices.base import Assignment, ChoiceModule, fixed_values, require_sizes
from supernet.choices.layers import prefix, superpose
from supernet.choices.values import largest


class TokenPositions(nn.Module):
    """Plain class token and learned positions (the fixed form), initialised as ViT's
    reference code does (truncated normal, std 0.02)."""

    def __init__(self, num_tokens: int, embed_dim: int, class_token: bool = True):
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.pos = nn.Parameter(torch.zeros(1, num_tokens + int(class_token), embed_dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        if self.cls is not None:
            nn.init.trunc_normal_(self.cls, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos


class ClassTokenPositions(ChoiceModule):
    """``TokenPositions`` whose ``embed_dim`` may be a value choice (module docstring)."""

    def __init__(self, num_tokens: int, embed_dim: Any, class_token: bool = True):
        super().__init__()
        self._values = {"embed_dim": embed_dim}
        self.check()
        self.num_tokens, self.class_token = num_tokens, class_token
        ref = TokenPositions(num_tokens, largest(embed_dim), class_token)
        self.cls, self.pos = ref.cls, ref.pos

    def value_args(self) -> dict[str, Any]:
        return dict(self._values)

    def check(self) -> None:
        require_sizes("ClassTokenPositions", self._values, ("embed_dim",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        E = self.pos.shape[-1]
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        m = superpose(self._values, self.pos, lambda v: prefix(v["embed_dim"], E, self.pos))
        return (x + self.pos) * m

    def fixed(self, assignment: Assignment, inherit: bool) -> TokenPositions:
        e = fixed_values(self._values, assignment)["embed_dim"]
        out = TokenPositions(self.num_tokens, e, self.class_token)
        if inherit:
            with torch.no_grad():
                out.pos.copy_(self.pos[..., :e])
                if self.cls is not None:
                    out.cls.copy_(self.cls[..., :e])
        return out.to(self.pos.device)
