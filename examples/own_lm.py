"""Search your own language model: a tiny decoder with three choices, on ``data=text``::

    python train.py search_space=module search_space.model=examples.own_lm.TinyLM data=text
    python train.py search_space=module search_space.model=examples.own_lm.TinyLM data=text \\
        data.path=my_notes/            # any UTF-8 file, or a folder of *.txt / *.md / *.py

The language-modelling contract (``nas/data/tokens.py``): the model takes ``x`` int64 token ids
[B, T] and returns next-token logits flattened to [B * T, V] (row ``b * T + t`` predicts the
token after ``x[b, t]``); the targets arrive flattened as [B * T], so the search and retrain
steps' cross-entropy and accuracy apply as they are. The model must be causal (position ``t``
sees tokens ``<= t`` only), otherwise it reads the answer. Its head is applied on [B, T, C]
before flattening, so the MACs counter (per sample: the first dimension is the batch) counts it
for every position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from supernet.choices import LayerChoice, Linear, Repeat, ValueChoice


class CausalAttention(nn.Module):
    """Multi-head self-attention where position ``t`` attends to positions ``<= t``."""

    def __init__(self, dim: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).unbind(2)
        o = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        return self.out(o.transpose(1, 2).reshape(b, t, c))


class CausalConv(nn.Module):
    """A depthwise convolution over time, padded on the left only (a causal kernel)."""

    def __init__(self, dim: int, kernel: int = 4):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(dim, dim, kernel, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.pad(x.transpose(1, 2), (self.kernel - 1, 0))
        return self.conv(h).transpose(1, 2)


class CausalMean(nn.Module):
    """The mean of the tokens so far (a parameter-free mixer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        count = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)
        return x.cumsum(1) / count[:, None]


class Block(nn.Module):
    """A pre-norm block: a searched token ``mixer`` (attention, causal conv or running mean)
    and an MLP of searched ``mlp_ratio``, each label shared by every block."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        ratio = ValueChoice([2, 4], label="mlp_ratio")
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = LayerChoice(
            {
                "attention": CausalAttention(dim, heads),
                "conv": CausalConv(dim),
                "mean": CausalMean(),
            },
            label="mixer",
        )
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = Linear(dim, dim * ratio)
        self.fc2 = Linear(dim * ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyLM(nn.Module):
    """A character-level (byte) decoder with three choices: ``depth`` (1 .. ``layers``
    blocks), and per block (shared labels) the token ``mixer`` and the ``mlp_ratio``.

    Args:
        num_classes: The vocabulary (``data.num_classes``: 256 for bytes).
        input_shape: ``[T]``, the context length (``data.input_shape``).
        C: The embedding width (``search_space.C`` / ``retrain.C`` where set).
        layers: The deepest choice of ``depth``.
        heads: Attention heads (they split ``C``).
    """

    def __init__(
        self,
        num_classes: int = 256,
        input_shape: Sequence[int] = (64,),
        C: int = 32,
        layers: int = 2,
        heads: int = 2,
    ):
        super().__init__()
        if len(input_shape) != 1:
            raise ValueError(
                f"TinyLM reads token windows: input_shape must be [T] (data=text), got "
                f"{list(input_shape)}."
            )
        (context,) = input_shape
        if C % heads:
            raise ValueError(f"TinyLM: C={C} must be a multiple of heads={heads}.")
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, C)
        self.position = nn.Parameter(torch.zeros(1, context, C))
        nn.init.normal_(self.position, std=0.02)
        self.blocks = Repeat(
            lambda i: Block(C, heads), depth=ValueChoice(list(range(1, layers + 1)), label="depth")
        )
        self.norm = nn.LayerNorm(C)
        self.head = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Token ids; .long() also takes the float zeros that shape probes feed a model.
        tokens = x.long()
        h = self.embed(tokens) + self.position[:, : tokens.shape[1]]
        logits = self.head(self.norm(self.blocks(h)))  # [B, T, V]
        return logits.reshape(-1, self.num_classes)  # [B * T, V]
