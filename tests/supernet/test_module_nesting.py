"""Nested choices in a user's model: a layer choice whose candidates hold value-choice layers
and another layer choice, a repeated block with choices inside. The fixed model equals the
supernet at every one-hot choice (every genotype of the space), and the decisions are found
once each."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from supernet.choices import (
    BatchNorm2d,
    Conv2d,
    LayerChoice,
    Linear,
    Repeat,
    ValueChoice,
    has_choices,
)
from supernet.spaces import build_space

MODEL = f"{__name__}.Nested"


class Inner(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv = Conv2d(8, width, ValueChoice([1, 3], label="inner_kernel"))
        self.bn = BatchNorm2d(width)
        self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="inner_act")
        self.back = Conv2d(width, 8, 1)

    def forward(self, x):
        return self.back(self.act(self.bn(self.conv(x))))


class Nested(nn.Module):
    def __init__(self, num_classes: int = 10, input_shape=(1, 8, 8)):
        super().__init__()
        width = ValueChoice([4, 8], label="width")
        self.stem = nn.Conv2d(input_shape[0], 8, 3, padding=1)
        self.outer = LayerChoice(
            {"inner": Inner(width), "pool": nn.AvgPool2d(3, 1, 1)}, label="outer"
        )
        self.blocks = Repeat(
            lambda i: nn.Sequential(
                nn.Conv2d(8, 8, 3, padding=1),
                LayerChoice({"relu": nn.ReLU(), "gelu": nn.GELU()}, label="block_act"),
            ),
            depth=ValueChoice([0, 1, 2], label="depth"),
        )
        self.head = Linear(8, ValueChoice([16, 32], label="hidden"))
        self.fc = Linear(ValueChoice([16, 32], label="hidden"), num_classes)

    def forward(self, x):
        h = self.blocks(self.outer(self.stem(x))).mean((2, 3))
        return self.fc(torch.relu(self.head(h)))


def test_nested_decisions_are_found_once_each():
    space = build_space("module", (1, 8, 8), 10, model=MODEL)
    labels = [d.label for d in space.decisions]
    assert sorted(labels) == sorted(
        ["outer", "width", "inner_kernel", "inner_act", "depth", "block_act", "hidden"]
    )
    assert space.genotype_count() == 2 * 2 * 2 * 2 * 3 * 2 * 2


@pytest.mark.parametrize("train", [False, True])
def test_the_fixed_model_equals_the_supernet_at_every_genotype(train):
    space = build_space("module", (1, 8, 8), 10, model=MODEL)
    torch.manual_seed(0)
    supernet = space.build_supernet()
    supernet.train(train)
    x = torch.randn(4, 1, 8, 8)
    for genotype in space.all_genotypes():
        one_hot = torch.zeros(space.alpha_shape)
        for row, col in enumerate(genotype.columns()):
            one_hot[row, col] = 1.0
        child = space.child_from_supernet(supernet, genotype).train(train)
        assert not has_choices(child)
        with torch.no_grad():
            expected = supernet(x, {"decisions": one_hot})
            got = child(x)[0]
        assert (got - expected).abs().max() <= 1e-5, str(genotype)
