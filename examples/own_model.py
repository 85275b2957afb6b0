"""Search your own model: two small plain-PyTorch models with four choices each.

``SmallCNN`` (the default of ``search_space=module``) and ``TinyTransformer`` are ordinary
``nn.Module`` classes; where the search should decide they use ``supernet.choices``::

    python train.py search_space=module                                  # SmallCNN, DARTS
    python train.py search_space=module search_space.model=examples.own_model.TinyTransformer
    python train.py search_space=module strategy=gdas                    # or spos, proxyless, ...

Each runs the whole pipeline on the embedded digits: search, discretize (``genotype.json``:
decision label -> choice), retrain the fixed model (each choice replaced by the chosen module or
value) and export it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from supernet.choices import (
    BatchNorm2d,
    Conv2d,
    InputChoice,
    LayerChoice,
    LayerNorm,
    Linear,
    MultiheadAttention,
    Repeat,
    ValueChoice,
)


class SmallCNN(nn.Module):
    """A stem, ``layers`` searched blocks and a classifier, with four choices:

    - ``width``: the channels of the stem and blocks (C, 1.5 C or 2 C), a value choice shared
      by every layer that uses it (weight entanglement: one set of weights at 2 C);
    - ``stem_kernel``: 3 or 5;
    - ``block``: a 3x3 conv, a 5x5 depthwise-separable conv, or nothing (identity), the same
      in every block (one label);
    - ``head_input``: whether the classifier reads the stem's or the last block's features.
    """

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 8, 8),
        C: int = 16,
        layers: int = 1,
    ):
        super().__init__()
        width = ValueChoice([C, C * 3 // 2, 2 * C], label="width")
        self.stem = nn.Sequential(
            Conv2d(input_shape[0], width, ValueChoice([3, 5], label="stem_kernel"), bias=False),
            BatchNorm2d(width),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*(self.block(width) for _ in range(layers)))
        self.head_input = InputChoice(2, 1, label="head_input")
        self.pool = nn.AdaptiveAvgPool2d(2)  # 2x2 regions: where the strokes are still counts
        self.classifier = Linear(width * 4, num_classes)  # width x 2 x 2 features

    @staticmethod
    def block(width: ValueChoice) -> LayerChoice:
        return LayerChoice(
            {
                "conv3x3": nn.Sequential(
                    Conv2d(width, width, 3, bias=False), BatchNorm2d(width), nn.ReLU()
                ),
                "sepconv5x5": nn.Sequential(
                    Conv2d(width, width, 5, groups="depthwise", bias=False),
                    Conv2d(width, width, 1, bias=False),
                    BatchNorm2d(width),
                    nn.ReLU(),
                ),
                "skip": nn.Identity(),
            },
            label="block",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        features = self.head_input([stem, self.blocks(stem)])
        return self.classifier(self.pool(features).flatten(1))


class TokenMean(nn.Module):
    """Token mixing by the mean over tokens (a parameter-free mixer, as in PoolFormer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1, keepdim=True).expand_as(x)


class Block(nn.Module):
    """A pre-norm transformer block; the token ``mixer``, the attention's ``heads`` (a choice
    nested inside the mixer's attention candidate; the heads split the width) and the
    ``mlp_ratio`` are searched, each label shared by every block."""

    def __init__(self, dim: int, heads: Sequence[int]):
        super().__init__()
        ratio = ValueChoice([2, 4], label="mlp_ratio")
        attention = MultiheadAttention(dim, ValueChoice(list(heads), label="heads"))
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = LayerChoice({"attention": attention, "mean": TokenMean()}, label="mixer")
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = Linear(dim, dim * ratio)  # the hidden width follows the ratio: dim * ratio
        self.fc2 = Linear(dim * ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyTransformer(nn.Module):
    """A ViT-style classifier on 2x2 patches, with four choices: ``depth`` (1 or 2 blocks),
    and per block (shared labels) the token ``mixer`` (attention or mean), the attention's
    ``heads`` (1, 2 or 4) and the ``mlp_ratio`` (2 or 4)."""

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 8, 8),
        C: int = 32,
        layers: int = 2,
        patch: int = 2,
        heads: Sequence[int] = (1, 2, 4),
    ):
        super().__init__()
        channels, height, width = input_shape
        self.patch = patch
        tokens = (height // patch) * (width // patch)
        self.embed = nn.Linear(channels * patch * patch, C)
        self.position = nn.Parameter(torch.zeros(1, tokens, C))
        self.blocks = Repeat(
            lambda i: Block(C, heads), depth=ValueChoice(list(range(1, layers + 1)), label="depth")
        )
        self.norm = LayerNorm(C)
        self.head = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        b, c, h, w = x.shape
        patches = (
            x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).flatten(3).flatten(1, 2)
        )
        tokens = self.embed(patches) + self.position
        return self.head(self.norm(self.blocks(tokens)).mean(1))
