"""Cost tables of a ``module`` space (``supernet/spaces/module_costs.py``): per decision and
choice, exact where decisions do not share a layer; the attention's MACs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.hardware.costs import space_cost_model
from nas.hardware.profile import count_macs, count_params, module_macs
from supernet.choices import Conv2d, LayerChoice, ValueChoice
from supernet.spaces import build_space

MODEL = f"{__name__}.Independent"


class Independent(nn.Module):
    """Three decisions that size different layers: a stem kernel, a block, the head's input."""

    def __init__(self, num_classes: int = 10, input_shape=(1, 8, 8)):
        super().__init__()
        self.stem = Conv2d(input_shape[0], 8, ValueChoice([3, 5], label="kernel"))
        self.block = LayerChoice(
            {
                "conv": nn.Conv2d(8, 8, 3, padding=1),
                "pool": nn.AvgPool2d(3, 1, 1),
                "skip": nn.Identity(),
            },
            label="block",
        )
        self.mix = LayerChoice(
            {"one": nn.Conv2d(8, 16, 1), "three": nn.Conv2d(8, 16, 3, padding=1)}
        )
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mix(self.block(self.stem(x))).mean((2, 3)))


def test_tables_are_exact_for_decisions_that_size_different_layers():
    space = build_space("module", (1, 8, 8), 10, model=MODEL)
    assert [d.label for d in space.decisions] == ["kernel", "block", "mix"]
    model = space_cost_model(space)
    for genotype in space.all_genotypes():  # 2 x 3 x 2
        child = space.build_child(genotype)
        assert model.genotype_cost(space, genotype, "params") == count_params(child)
        assert model.genotype_cost(space, genotype, "macs") == count_macs(child, (1, 8, 8))
    # Padding columns cost nothing and the expected cost of a one-hot choice is its cost.
    params = model.table("params")["decisions"]
    assert params.shape == (3, 3) and params[0, 2] == 0 and params[2, 2] == 0


@pytest.mark.parametrize(
    "model", ["examples.own_model.SmallCNN", "examples.own_model.TinyTransformer"]
)
def test_joint_places_price_every_genotype_of_the_examples_exactly(model):
    """SmallCNN's width sizes the stem, every block candidate and the classifier; the
    transformer's depth, mixer, ratio and activation meet in the repeated blocks: each place is
    priced per joint choice of its decisions, so every genotype's table cost is its count."""
    space = build_space("module", (1, 8, 8), 10, model=model)
    model = space_cost_model(space)
    for genotype in space.all_genotypes():
        child = space.build_child(genotype)
        assert model.genotype_cost(space, genotype, "params") == count_params(child)
        assert model.genotype_cost(space, genotype, "macs") == count_macs(child, (1, 8, 8))
    # The expectation at a one-hot distribution is that genotype's cost.
    genotype = space.random_genotype(torch.Generator().manual_seed(0))
    one_hot = torch.zeros(space.alpha_shape, dtype=torch.float64)
    for row, col in enumerate(genotype.columns()):
        one_hot[row, col] = 1.0
    expected = model.expected({"decisions": one_hot}, "macs")
    assert float(expected) == model.genotype_cost(space, genotype, "macs")


def test_attention_macs_count_projections_and_the_quadratic_term():
    class Attend(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.attn(x, x, x)[0]

    T, E = 5, 8
    assert module_macs(Attend(), (T, E)) == {"attn": 4 * T * E * E + 2 * T * T * E}
