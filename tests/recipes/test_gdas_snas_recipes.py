"""GDAS' selection rule, the genotype rule it needs, and the GDAS / SNAS recipes (issue 19).

GDAS (Dong & Yang, CVPR 2019; official ``genotype()`` in D-X-Y/AutoDL-Projects
``search_model_gdas_nasnet.py``) keeps the top-2 (op, input) pairs over all of a node's edges,
so one input may feed a node twice through two different ops. SNAS (Xie et al., ICLR 2019)
runs without its resource constraint unless the constrained strategy is named.
"""

from __future__ import annotations

import pytest
import torch

from nas.core.genotype import Genotype, GenotypeError
from nas.strategies.selection import SELECTION_RULES, select
from nas.strategies.selection.gdas_top2 import gdas_top2, gdas_top2_cell
from nas.strategies.selection.top_k import darts_top2
from supernet.spaces.darts import DARTS_OPS, DartsSpace
from supernet.spaces.darts_child import DartsChildNetwork
from tests.helpers.config import compose_recipe

OP = {name: i for i, name in enumerate(DARTS_OPS)}
# Edge indices per node in the documented order (node 2: inputs 0, 1; node 3: 0, 1, 2; ...).
NODE_EDGES = {2: [0, 1], 3: [2, 3, 4], 4: [5, 6, 7, 8], 5: [9, 10, 11, 12, 13]}


@pytest.fixture
def space() -> DartsSpace:
    return DartsSpace(input_shape=(3, 8, 8), num_classes=5, C=4, layers=3)


def _probs() -> torch.Tensor:
    """Per-edge weights where each node's two best (op, input) pairs share input 0."""
    W = torch.full((14, len(DARTS_OPS)), 0.01, dtype=torch.float64)
    for edges in NODE_EDGES.values():
        first = edges[0]  # the edge from input 0
        W[first, OP["sep_conv_3x3"]] = 0.5
        W[first, OP["dil_conv_5x5"]] = 0.4
        W[edges[1], OP["skip_connect"]] = 0.3  # the best op of another edge, third overall
        W[edges[1], OP["none"]] = 0.9  # 'none' is never chosen, however strong
    return W


def test_gdas_rule_keeps_two_ops_of_one_input(space: DartsSpace) -> None:
    W = _probs()
    pairs = gdas_top2_cell(W, space.ops, space.edges)
    assert pairs == [("sep_conv_3x3", 0), ("dil_conv_5x5", 0)] * 4
    # DARTS' rule on the same weights keeps two distinct edges instead.
    g = darts_top2({"normal": W, "reduce": W}, space)
    assert g.normal[:2] == (("sep_conv_3x3", 0), ("skip_connect", 1))


def test_gdas_rule_never_picks_none(space: DartsSpace) -> None:
    W = torch.full((14, len(DARTS_OPS)), 0.01, dtype=torch.float64)
    W[:, OP["none"]] = 0.99
    W[0, OP["max_pool_3x3"]] = 0.02
    pairs = gdas_top2_cell(W, space.ops, space.edges)
    assert all(op != "none" for op, _ in pairs)
    assert pairs[0] == ("max_pool_3x3", 0)
    # Equal weights keep the official listing order: lower input first, then the earlier op.
    assert pairs[1] == (DARTS_OPS[2], 0)  # avg_pool_3x3 on input 0 (after max_pool_3x3)


def test_gdas_rule_is_registered_and_gives_a_valid_genotype(space: DartsSpace) -> None:
    assert SELECTION_RULES["gdas_top2"] is gdas_top2
    probs = {c: _probs() for c in space.cell_types}
    g = select("gdas_top2", probs, space)
    assert isinstance(g, Genotype) and g.normal == g.reduce
    assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
    assert Genotype.from_dict(g.to_dict()) == g


def test_gdas_rule_selects_only_the_normal_cell_with_a_fixed_reduction_cell() -> None:
    frc = DartsSpace(input_shape=(3, 8, 8), num_classes=5, C=4, layers=3, reduce_cell="gdas_frc")
    g = gdas_top2({"normal": _probs()}, frc)
    assert g.reduce == () and g.reduce_cell == "gdas_frc"
    assert g.normal[:2] == (("sep_conv_3x3", 0), ("dil_conv_5x5", 0))


def _genotype(node2: list[tuple[str, int]]) -> Genotype:
    rest = [("skip_connect", 0), ("sep_conv_3x3", 2)] * 3
    pairs, concat = [*node2, *rest], [2, 3, 4, 5]
    return Genotype(normal=pairs, normal_concat=concat, reduce=pairs, reduce_concat=concat)


def test_one_input_twice_with_two_ops_is_a_valid_genotype() -> None:
    g = _genotype([("sep_conv_3x3", 0), ("dil_conv_5x5", 0)])
    assert Genotype.from_text(str(g)) == g


def test_the_same_pair_twice_is_refused() -> None:
    with pytest.raises(
        GenotypeError, match=r"normal: node 2 lists the pair \('sep_conv_3x3', 0\) twice"
    ):
        _genotype([("sep_conv_3x3", 0), ("sep_conv_3x3", 0)])


def test_child_network_of_a_repeated_input_builds_and_runs() -> None:
    g = _genotype([("sep_conv_3x3", 0), ("dil_conv_5x5", 0)])
    net = DartsChildNetwork(g, (3, 8, 8), num_classes=5, C=4, layers=3, auxiliary=False)
    cell = net.cells[0]
    assert len(cell.ops) == 8 and cell.indices[:2] == [0, 0]  # one op per (op, input) pair
    net.eval()
    logits, aux = net(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 5) and aux is None and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["snas_cifar10", "nb201_snas"])
def test_snas_recipes_have_no_resource_regularizer(name: str) -> None:
    cfg = compose_recipe(name)
    assert cfg.strategy.name == "snas" and list(cfg.strategy.regularizers) == []


def test_constrained_snas_has_the_resource_regularizer() -> None:
    cfg = compose_recipe("snas_mild_cifar10")
    assert cfg.strategy.name == "snas_constrained"
    (reg,) = cfg.strategy.regularizers
    assert reg._target_ == "nas.strategies.regularizers.ResourceCost" and reg.cost == "flops"
    assert cfg.trainer.max_epochs == 150 and cfg.search_space.name == "darts"
    # Everything but the regularizer is snas_cifar10's.
    plain = compose_recipe("snas_cifar10")
    assert cfg.strategy.sampler == plain.strategy.sampler
    assert cfg.strategy.arch_grad == plain.strategy.arch_grad


@pytest.mark.parametrize("name", ["gdas_cifar10", "gdas_frc_cifar10"])
def test_gdas_darts_space_recipes_use_the_gdas_rule(name: str) -> None:
    cfg = compose_recipe(name)
    assert cfg.strategy.selection == "gdas_top2"
    # nb201 derives its cell per edge: the space's own rule.
    assert compose_recipe("nb201_gdas").strategy.selection is None
