"""One MACs counter (``nas.hardware.profile``) for the reports and the cost tables, and the
space-owned parts of the tables (reference genotype, shapes, stub): their numbers pinned to
those of the two counters and the name-branching tables they replaced (commit 9cd4b35)."""

from __future__ import annotations

import pytest
import torch

from nas.hardware.costs import space_cost_model
from nas.hardware.profile import count_macs, module_macs
from nas.strategies.selection import select
from supernet.spaces import build_space

SHAPE = (3, 8, 8)
SPACES = {
    "darts": {"C": 4, "layers": 3, "steps": 2, "multiplier": 2},
    "nb201": {"C": 4, "layers": 1},
    "mbconv": {"C": 8, "layers": 1},
}
# space -> child MACs, supernet MACs (uniform weights), fixed MACs, fixed params, fixed-part
# latency key, Σ MACs table, Σ params table (of the first cell type), as measured before.
PINNED = {
    "darts": (43424, 372256, 43424, 1265, "fixed|darts|3x8x8|462db303bff1", 161280, 2760),
    "nb201": (35664, 219984, 35664, 4809, "fixed|nb201|3x8x8|d2b6b77ca456", 184320, 20832),
    "mbconv": (211712, 45296, 45296, 1029, "fixed|mbconv|3x8x8|be687cec966c", 2139936, 231120),
}


def uniform(space) -> dict[str, torch.Tensor]:
    return {c: torch.full(space.alpha_shape, 1.0 / len(space.ops)) for c in space.cell_types}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_the_counts_are_the_ones_measured_before(name):
    space = build_space(name, SHAPE, 5, **SPACES[name])
    child = space.build_child(space.reference_genotype(), C=space.C, layers=space.layers)
    supernet = space.build_supernet()
    child_macs, net_macs, fixed_macs, fixed_params, key, macs_sum, params_sum = PINNED[name]
    assert count_macs(child, SHAPE) == sum(module_macs(child, SHAPE).values()) == child_macs
    assert count_macs(supernet, SHAPE, forward_args=(uniform(space),)) == net_macs
    cm = space_cost_model(space)
    assert (cm.fixed_macs, cm.fixed_params, cm.fixed_key) == (fixed_macs, fixed_params, key)
    cell = space.cell_types[0]
    assert float(cm.table("macs")[cell].sum()) == macs_sum
    assert float(cm.table("params")[cell].sum()) == params_sum


def test_module_macs_names_each_counted_layer():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 8 * 8, 10))  # fmt: skip
    assert module_macs(net, SHAPE) == {"0": 4 * 8 * 8 * 3 * 9, "2": 4 * 8 * 8 * 10}
    assert count_macs(torch.nn.Identity(), SHAPE) == 0  # no parameters: runs on the CPU


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("darts", {}),
        ("darts", {"reduce_cell": "gdas_frc"}),
        ("darts", {"ops": ["max_pool_3x3", "skip_connect", "sep_conv_3x3"], "multiplier": 3}),
        ("nb201", {}),
        ("nb201", {"ops": ["skip_connect", "none", "nor_conv_3x3"]}),
        ("mbconv", {}),
        ("mbconv", {"layout": "imagenet_mobile", "layers": 1}),
    ],
)
def test_the_reference_genotype_is_the_default_rule_on_uniform_alpha(name, options):
    """What the cost tables read their shapes from: before, ``select`` was called for it."""
    space = build_space(name, (3, 32, 32), 10, **options)
    assert space.reference_genotype() == select(space.default_selection, uniform(space), space)
