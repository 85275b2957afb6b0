"""Tests of the selection rules: DARTS' top-2 rule (nas/strategies/selection/top_k.py)."""

from __future__ import annotations

import pytest
import torch

from nas.core.genotype import Genotype
from nas.strategies.samplers import SoftmaxSampler
from nas.strategies.selection import SELECTION_RULES, select
from nas.strategies.selection.top_k import darts_top2, top_k_cell
from supernet.spaces.darts import DARTS_OPS, DartsSpace

OP = {name: i for i, name in enumerate(DARTS_OPS)}
# Edge indices per node in the documented order.
NODE_EDGES = {2: [0, 1], 3: [2, 3, 4], 4: [5, 6, 7, 8], 5: [9, 10, 11, 12, 13]}


@pytest.fixture
def space() -> DartsSpace:
    return DartsSpace(input_shape=(3, 8, 8), num_classes=5, C=4, layers=3)


def _base(value: float = 0.01) -> torch.Tensor:
    return torch.full((14, len(DARTS_OPS)), value, dtype=torch.float64)


def _inp(space: DartsSpace, e: int) -> int:
    return space.edges[e][0]


def test_picks_two_strongest_edges_per_node_strongest_first(space: DartsSpace) -> None:
    W = _base()
    # node 2: edge 1 stronger than edge 0
    W[0, OP["sep_conv_3x3"]] = 0.3
    W[1, OP["dil_conv_5x5"]] = 0.6
    # node 3: edges 3 (0.5) > 4 (0.4) > 2 (0.3)
    W[2, OP["max_pool_3x3"]] = 0.3
    W[3, OP["skip_connect"]] = 0.5
    W[4, OP["avg_pool_3x3"]] = 0.4
    # node 4: edge 8 (input 3) strongest, then edge 5 (input 0)
    W[5, OP["sep_conv_5x5"]] = 0.45
    W[6, OP["sep_conv_3x3"]] = 0.2
    W[7, OP["sep_conv_3x3"]] = 0.44
    W[8, OP["dil_conv_3x3"]] = 0.7
    # node 5: edges 12 and 10
    W[10, OP["sep_conv_3x3"]] = 0.25
    W[12, OP["skip_connect"]] = 0.35
    W[13, OP["sep_conv_3x3"]] = 0.2
    pairs = top_k_cell(W, space.ops, space.edges)
    assert pairs == [
        ("dil_conv_5x5", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 1),
        ("avg_pool_3x3", 2),
        ("dil_conv_3x3", 3),
        ("sep_conv_5x5", 0),
        ("skip_connect", 3),
        ("sep_conv_3x3", 1),
    ]


def test_edge_ties_keep_lower_edge_first(space: DartsSpace) -> None:
    W = _base(0.1)
    W[:, OP["sep_conv_3x3"]] = 0.5  # every edge equally strong
    pairs = top_k_cell(W, space.ops, space.edges)
    assert pairs == [("sep_conv_3x3", i) for _ in range(4) for i in (0, 1)]
    # Node 4: edges 6 and 8 tie at the top; edge 8 (input 3) after edge 6 (input 1).
    W[6, OP["skip_connect"]] = 0.9
    W[8, OP["dil_conv_3x3"]] = 0.9
    pairs = top_k_cell(W, space.ops, space.edges)
    assert pairs[4:6] == [("skip_connect", 1), ("dil_conv_3x3", 3)]
    # Node 5: a tie for second place between edges 13 and 11 keeps edge 11 (input 2).
    W[12, OP["sep_conv_5x5"]] = 0.9
    W[11, OP["avg_pool_3x3"]] = 0.7
    W[13, OP["max_pool_3x3"]] = 0.7
    assert top_k_cell(W, space.ops, space.edges)[6:] == [("sep_conv_5x5", 3), ("avg_pool_3x3", 2)]


@pytest.mark.parametrize(
    "tied,expected",
    [
        (("sep_conv_3x3", "dil_conv_3x3"), "sep_conv_3x3"),
        (("dil_conv_5x5", "max_pool_3x3"), "max_pool_3x3"),
        (("skip_connect", "avg_pool_3x3", "sep_conv_5x5"), "avg_pool_3x3"),
        (tuple(DARTS_OPS[1:]), "max_pool_3x3"),
    ],
)
def test_op_ties_pick_first_op(space: DartsSpace, tied: tuple[str, ...], expected: str) -> None:
    W = _base()
    for e in range(14):
        for name in tied:
            W[e, OP[name]] = 0.4
    pairs = top_k_cell(W, space.ops, space.edges)
    assert [op for op, _ in pairs] == [expected] * 8


def test_none_dominant_edge_ranked_by_best_non_none_op(space: DartsSpace) -> None:
    W = _base(0.0)
    # node 2: edge 0 is mostly `none`, but its best real op (0.05) beats edge 1's (0.04).
    W[0] = torch.tensor([0.9, 0.01, 0.01, 0.01, 0.05, 0.01, 0.005, 0.005], dtype=torch.float64)
    W[1] = torch.tensor([0.0, 0.04, 0.04, 0.3, 0.3, 0.1, 0.2, 0.02], dtype=torch.float64)
    W[1] = W[1] / 25  # 0.012 max: weaker than edge 0's 0.05
    # node 3: edge 2 is all `none` but for a tiny real op; edges 3 and 4 beat it.
    W[2, OP["none"]] = 0.99
    W[2, OP["avg_pool_3x3"]] = 0.001
    W[3, OP["sep_conv_5x5"]] = 0.5
    W[4, OP["none"]] = 0.6
    W[4, OP["max_pool_3x3"]] = 0.2
    # nodes 4 and 5: `none` is the largest entry of every edge.
    for e in range(5, 14):
        W[e, OP["none"]] = 0.95
        W[e, OP["dil_conv_3x3"]] = 0.01 * e
    pairs = top_k_cell(W, space.ops, space.edges)
    assert all(op != "none" for op, _ in pairs)
    assert pairs[:2] == [("sep_conv_3x3", 0), ("skip_connect", 1)]
    assert pairs[2:4] == [("sep_conv_5x5", 1), ("max_pool_3x3", 2)]
    assert pairs[4:6] == [("dil_conv_3x3", 3), ("dil_conv_3x3", 2)]
    assert pairs[6:] == [("dil_conv_3x3", 4), ("dil_conv_3x3", 3)]


def test_all_none_rows_still_give_real_ops(space: DartsSpace) -> None:
    W = torch.zeros(14, 8)
    W[:, 0] = 1.0
    pairs = top_k_cell(W, space.ops, space.edges)
    assert pairs == [("max_pool_3x3", i) for _ in range(4) for i in (0, 1)]


def test_uniform_probabilities(space: DartsSpace) -> None:
    probs = SoftmaxSampler().probabilities({c: torch.zeros(14, 8) for c in space.cell_types})
    g = darts_top2(probs, space)
    assert g.normal == g.reduce == tuple(("max_pool_3x3", i) for _ in range(4) for i in (0, 1))


def _check_darts_rule(W: torch.Tensor, space: DartsSpace, pairs: list[tuple[str, int]]) -> None:
    """The rule's defining properties, checked independently of its implementation."""
    real = [i for i, name in enumerate(space.ops) if name != "none"]
    strength = W[:, real].max(1).values
    for node, edge_ids in NODE_EDGES.items():
        chosen = pairs[2 * (node - 2) : 2 * node - 2]
        chosen_edges = [space.edges.index((inp, node)) for _, inp in chosen]
        assert len(set(chosen_edges)) == 2
        assert strength[chosen_edges[0]] >= strength[chosen_edges[1]]
        rest = [e for e in edge_ids if e not in chosen_edges]
        assert all(strength[chosen_edges[1]] >= strength[e] for e in rest)
        for (op, _), e in zip(chosen, chosen_edges):
            assert op != "none"
            assert W[e, space.ops.index(op)] == strength[e]


@pytest.mark.parametrize("seed", range(5))
def test_random_probabilities_satisfy_the_rule(space: DartsSpace, seed: int) -> None:
    torch.manual_seed(seed)
    alphas = {c: torch.randn(14, 8, requires_grad=True) for c in space.cell_types}
    probs = SoftmaxSampler().probabilities(alphas)
    g = darts_top2(probs, space)
    assert isinstance(g, Genotype)
    assert g.space == "darts"
    assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
    for cell in space.cell_types:
        pairs, _ = g.cell(cell)
        _check_darts_rule(probs[cell], space, list(pairs))
    # A valid genotype: it survives the text and dict round trips and fits the space.
    assert Genotype.from_text(str(g)) == g
    space.validate_genotype(g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_accepts_tensors_requiring_grad(space: DartsSpace, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    weights = {c: torch.rand(14, 8, dtype=dtype, requires_grad=True) for c in space.cell_types}
    g = select("darts_top2", weights, space)
    for cell in space.cell_types:
        _check_darts_rule(weights[cell].detach(), space, list(g.cell(cell)[0]))
        assert weights[cell].grad is None


def test_other_cell_sizes_concat() -> None:
    torch.manual_seed(0)
    space = DartsSpace((3, 8, 8), 5, C=4, layers=3, steps=3, multiplier=2)
    probs = {c: torch.rand(space.alpha_shape) for c in space.cell_types}
    g = darts_top2(probs, space)
    assert g.normal_concat == g.reduce_concat == (3, 4)
    assert len(g.normal) == len(g.reduce) == 6


def test_space_without_none_op() -> None:
    torch.manual_seed(0)
    space = DartsSpace((3, 8, 8), 5, C=4, layers=3, ops=("skip_connect", "sep_conv_3x3"))
    W = torch.rand(space.alpha_shape)
    pairs = top_k_cell(W, space.ops, space.edges)
    assert len(pairs) == 8
    _check_darts_rule(W, space, pairs)


def test_space_with_only_none_rejected() -> None:
    space = DartsSpace((3, 8, 8), 5, C=4, layers=3, ops=("none",))
    probs = {c: torch.ones(space.alpha_shape) for c in space.cell_types}
    with pytest.raises(ValueError, match="other than 'none'"):
        darts_top2(probs, space)


def test_k_larger_than_incoming_edges_rejected(space: DartsSpace) -> None:
    with pytest.raises(ValueError, match="Node 2 has 2 incoming edges; cannot keep 3"):
        top_k_cell(torch.rand(14, 8), space.ops, space.edges, k=3)


def test_k_one(space: DartsSpace) -> None:
    W = _base()
    W[1, OP["skip_connect"]] = 0.9
    pairs = top_k_cell(W, space.ops, space.edges, k=1)
    assert len(pairs) == 4
    assert pairs[0] == ("skip_connect", 1)


def test_registry(space: DartsSpace) -> None:
    assert SELECTION_RULES["darts_top2"] is darts_top2
    assert space.default_selection in SELECTION_RULES
    torch.manual_seed(0)
    probs = {c: torch.rand(14, 8) for c in space.cell_types}
    assert select("darts_top2", probs, space) == darts_top2(probs, space)


@pytest.mark.parametrize("rule", ["darts_top3", "", "DARTS_TOP2"])
def test_registry_rejects_unknown_rule(space: DartsSpace, rule: str) -> None:
    probs = {c: torch.rand(14, 8) for c in space.cell_types}
    with pytest.raises(ValueError) as info:
        select(rule, probs, space)
    msg = str(info.value)
    assert repr(rule) in msg
    for name in SELECTION_RULES:
        assert name in msg
