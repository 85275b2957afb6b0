"""FairDARTS (sigmoid mixing, zero-one loss, threshold rule) and β-DARTS (Beta-Decay): each
component's defining property on tiny inputs. The end-to-end searches in both spaces run in
``tests/strategies/test_sampling_strategies.py`` (every ``conf/strategy/*.yaml``)."""

from __future__ import annotations

import math

import pytest
import torch

from nas.search.figures import alpha_heatmap
from nas.search.report import mean_entropy, weight_kind
from nas.strategies import Strategy
from nas.strategies.regularizers import BetaDecay, ZeroOneLoss
from nas.strategies.samplers import SigmoidSampler, SoftmaxSampler
from nas.strategies.selection import SELECTION_RULES, select
from nas.strategies.selection.threshold import OP_THRESHOLD, below_threshold
from nas.strategies.selection.top_k import darts_top2
from supernet.spaces.darts import DartsSpace
from supernet.spaces.nb201 import NB201Space
from tests.helpers import modules


@pytest.fixture(scope="module")
def darts() -> DartsSpace:
    return DartsSpace((3, 8, 8), 5, C=4, layers=3)


@pytest.fixture(scope="module", name="nb201")
def nb201_space() -> NB201Space:
    return modules.nb201()


# --- FairDARTS: sigmoid sampler -------------------------------------------------------------


def test_sigmoid_sampler_mixes_and_reports_independent_sigmoids():
    a = torch.randn(6, 5, requires_grad=True)
    s = SigmoidSampler()
    w = s({"cell": a}).weights["cell"]
    torch.testing.assert_close(w, torch.sigmoid(a))
    torch.testing.assert_close(s.probabilities({"cell": a})["cell"], torch.sigmoid(a.detach()))
    w.sum().backward()  # every op's α gets its own gradient σ'(α), no softmax coupling
    torch.testing.assert_close(a.grad, torch.sigmoid(a) * (1 - torch.sigmoid(a)))


# --- FairDARTS: zero-one loss ---------------------------------------------------------------


def test_zero_one_loss_is_the_negative_mean_squared_distance_from_one_half():
    arch = {"normal": torch.randn(14, 7), "reduce": torch.randn(14, 7)}
    s = torch.sigmoid(torch.cat([arch["normal"], arch["reduce"]]))
    expected = -10.0 * ((s - 0.5) ** 2).mean()
    torch.testing.assert_close(ZeroOneLoss()(arch), expected)
    torch.testing.assert_close(ZeroOneLoss(1.0, "l1")(arch), -(s - 0.5).abs().mean())
    # β entries of the arch dict (PC-DARTS) are not α.
    torch.testing.assert_close(ZeroOneLoss()({**arch, "beta/normal": torch.ones(14)}), expected)
    with pytest.raises(ValueError, match="l2, l1"):
        ZeroOneLoss(kind="l3")


def test_descending_the_zero_one_loss_pushes_sigmoids_to_zero_or_one():
    torch.manual_seed(0)
    a0 = 0.5 * torch.randn(14, 7)
    a = a0.clone().requires_grad_(True)
    opt = torch.optim.Adam([a], lr=0.1)
    reg = ZeroOneLoss(weight=10.0)
    for _ in range(150):
        opt.zero_grad()
        reg({"normal": a}).backward()
        opt.step()
    before, after = (torch.sigmoid(a0) - 0.5).abs(), (torch.sigmoid(a.detach()) - 0.5).abs()
    assert (after > before).all()
    assert (after > 0.45).all()  # every σ within 0.05 of 0 or 1
    assert torch.equal(a.detach() > 0, a0 > 0)  # each moves to the side it started on
    # At σ = 0.5 exactly (α = 0, FairDARTS' init) the loss has no gradient.
    z = torch.zeros(3, 4, requires_grad=True)
    reg({"normal": z}).backward()
    assert torch.count_nonzero(z.grad) == 0


# --- FairDARTS: threshold rule --------------------------------------------------------------


def _sigma(values: dict[tuple[int, str], float], space, base: float = 0.1) -> torch.Tensor:
    """``[edges, ops]`` σ values: ``base`` everywhere, ``values[(edge, op)]`` where given."""
    W = torch.full((len(space.edges), len(space.ops)), base)
    for (e, op), v in values.items():
        W[e, space.ops.index(op)] = v
    return W


def test_threshold_rule_keeps_passing_edges_first_and_fills_up_to_two(darts):
    # edges: 0:(0,2) 1:(1,2) | 2:(0,3) 3:(1,3) 4:(2,3) | 5..8: node 4 | 9..13: node 5
    normal = _sigma(
        {
            (0, "none"): 0.99,  # `none` is never kept, however strong
            (0, "sep_conv_3x3"): 0.90,
            (1, "skip_connect"): 0.95,
            (2, "max_pool_3x3"): 0.60,  # node 3: only edge 4 passes; edge 2 fills up
            (3, "avg_pool_3x3"): 0.50,
            (4, "dil_conv_5x5"): 0.86,
            (5, "sep_conv_5x5"): 0.30,  # node 4: nothing passes: the two strongest
            (7, "dil_conv_3x3"): 0.40,
            (9, "sep_conv_3x3"): 0.85,  # node 5: exactly at the threshold passes
            (13, "skip_connect"): 0.97,
            (12, "sep_conv_5x5"): 0.84,
        },
        darts,
    )
    probs = {"normal": normal, "reduce": normal.clone()}
    g = select("threshold", probs, darts)
    assert list(g.normal) == [
        ("skip_connect", 1), ("sep_conv_3x3", 0),
        ("dil_conv_5x5", 2), ("max_pool_3x3", 0),
        ("dil_conv_3x3", 2), ("sep_conv_5x5", 0),
        ("skip_connect", 4), ("sep_conv_3x3", 0),
    ]  # fmt: skip
    assert g.reduce == g.normal
    assert all(op != "none" for op, _ in g.normal)
    # Passing edges always outrank the rest, so on σ(α) the rule equals DARTS' top-2.
    assert g == darts_top2(probs, darts)
    low = below_threshold(probs, darts)["normal"]
    assert [(op, i, j) for op, i, j, _ in low] == [
        ("max_pool_3x3", 0, 3), ("dil_conv_3x3", 2, 4), ("sep_conv_5x5", 0, 4),
    ]  # fmt: skip
    assert all(s < OP_THRESHOLD for *_, s in low)


def test_threshold_rule_with_a_fixed_reduction_cell():
    space = DartsSpace((3, 8, 8), 5, C=4, layers=3, reduce_cell="gdas_frc")
    W = _sigma({(e, "sep_conv_3x3"): 0.9 for e in range(14)}, space)
    g = select("threshold", {"normal": W}, space)
    assert g.reduce == () and g.reduce_cell == "gdas_frc"
    assert {op for op, _ in g.normal} == {"sep_conv_3x3"}


def test_threshold_rule_in_nb201_keeps_one_op_per_edge_never_none(nb201):
    # edges: (0,1) (0,2) (1,2) (0,3) (1,3) (2,3)
    W = _sigma(
        {
            (0, "none"): 0.99,
            (0, "nor_conv_3x3"): 0.20,  # below the threshold: still the edge's op
            (1, "skip_connect"): 0.90,
            (2, "nor_conv_1x1"): 0.95,
            (3, "avg_pool_3x3"): 0.88,
            (4, "nor_conv_3x3"): 0.97,
            (5, "skip_connect"): 0.30,
            (5, "nor_conv_1x1"): 0.31,
        },
        nb201,
    )
    g = select("threshold", {"cell": W}, nb201)
    assert g.nodes == (
        (("nor_conv_3x3", 0),),
        (("skip_connect", 0), ("nor_conv_1x1", 1)),
        (("avg_pool_3x3", 0), ("nor_conv_3x3", 1), ("nor_conv_1x1", 2)),
    )
    low = below_threshold({"cell": W}, nb201)["cell"]
    assert [(op, i, j) for op, i, j, _ in low] == [("nor_conv_3x3", 0, 1), ("nor_conv_1x1", 2, 3)]


def test_threshold_rule_names_the_spaces_it_knows():
    class Other:
        name, default_selection, cell_types = "other", "something_else", ("cell",)

    assert "threshold" in SELECTION_RULES
    with pytest.raises(ValueError, match=r"search_space='other'.*darts.*nb201"):
        select("threshold", {"cell": torch.zeros(2, 2)}, Other())


# --- FairDARTS: the per-epoch report --------------------------------------------------------


def test_report_normalises_sigmoid_rows_and_centres_heatmaps_on_one_half(darts):
    s = torch.full((14, 8), 0.5)
    assert mean_entropy(s, normalize=True) == pytest.approx(math.log(8))
    assert mean_entropy(torch.full((14, 8), 1 / 8)) == pytest.approx(math.log(8))  # unchanged
    one_on = torch.full((14, 8), 1e-9)
    one_on[:, 3] = 1.0
    assert mean_entropy(one_on, normalize=True) == pytest.approx(0.0, abs=1e-6)

    class Module:
        def __init__(self, sampler):
            self.strategy = Strategy("t", sampler)

    assert weight_kind(Module(SigmoidSampler())) == (True, 0.5)
    assert weight_kind(Module(SoftmaxSampler())) == (False, None)
    fig = alpha_heatmap(torch.sigmoid(torch.randn(14, 8)), darts.ops, darts.edges, centre=0.5)
    assert fig.axes[0].images[0].norm(0.5) == pytest.approx(0.5)


# --- β-DARTS: Beta-Decay --------------------------------------------------------------------


def test_beta_decay_value_and_gradient_match_the_closed_form():
    reg = BetaDecay(scale=3.0)
    a_n = torch.randn(14, 8, requires_grad=True)
    a_r = torch.randn(14, 8, requires_grad=True)
    loss = reg({"normal": a_n, "reduce": a_r, "beta/normal": torch.ones(14)})
    E = 28  # the mean runs over the edges of both cell types
    lse = torch.cat([a_n.logsumexp(-1), a_r.logsumexp(-1)])
    torch.testing.assert_close(loss, 3.0 * lse.mean())
    loss.backward()
    torch.testing.assert_close(a_n.grad, 3.0 * a_n.detach().softmax(-1) / E)
    torch.testing.assert_close(a_r.grad, 3.0 * a_r.detach().softmax(-1) / E)
    # A constant added to a row moves the loss but not the softmax the network mixes with.
    assert float(reg({"cell": torch.ones(6, 5)})) == pytest.approx(3.0 * (1 + math.log(5)))


def test_beta_decay_lambda_follows_the_official_linear_schedule():
    reg = BetaDecay()  # λ = 50 · epoch / 100 (optimizers/darts/architect.py)
    for epoch, lam in [(0, 0.0), (1, 0.5), (49, 24.5), (99, 49.5), (150, 50.0)]:
        reg.on_epoch_start(epoch, 100)
        assert reg.scale == pytest.approx(lam)
    per_search = BetaDecay(max_scale=50.0, ramp_epochs=None)  # λ_max at the last epoch's end
    per_search.on_epoch_start(25, 50)
    assert per_search.scale == pytest.approx(25.0)
    fixed = BetaDecay(scale=7.0)
    fixed.on_epoch_start(30, 100)
    assert fixed.scale == 7.0
    with pytest.raises(ValueError, match="ramp_epochs"):
        BetaDecay(ramp_epochs=0)


def test_beta_decay_schedule_survives_a_strategy_resume():
    strategy = Strategy("beta_darts", SoftmaxSampler(), regularizers=[BetaDecay()])
    strategy.on_epoch_start(40, 100)
    state = strategy.state_dict()
    fresh = Strategy("beta_darts", SoftmaxSampler(), regularizers=[BetaDecay()])
    assert fresh.regularizers[0].scale == 0.0
    fresh.load_state_dict(state)
    assert fresh.regularizers[0].scale == pytest.approx(20.0)
    # The epoch hook alone gives the same λ (it runs again for the resumed epoch).
    again = Strategy("beta_darts", SoftmaxSampler(), regularizers=[BetaDecay()])
    again.on_epoch_start(40, 100)
    assert again.regularizers[0].scale == fresh.regularizers[0].scale
