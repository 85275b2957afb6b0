"""The distinctive mechanic of each sampling-family method (GDAS, SNAS, DrNAS, PC-DARTS, RSWS,
SPOS), and every (space x strategy) composition through search and discretization."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas.strategies.modifiers import (
    EdgeNormalization,
    PartialChannels,
    ProgressiveLearning,
    ProgressivePruning,
)
from nas.strategies.regularizers import DirichletKL, ResourceCost, op_costs
from nas.strategies.samplers import (
    DirichletSampler,
    GumbelHardSampler,
    GumbelSoftSampler,
    SoftmaxSampler,
    UniformPathSampler,
)
from nas.strategies.samplers.temperature import temperature
from nas.strategies.samplers.uniform import sample_arch
from nas.strategies.selection import EvolutionSelector, RandomSearchSelector
from supernet.grouped_edges import GroupedEdgesCell
from supernet.mixed import MixedOp, channel_shuffle
from supernet.spaces.darts import DartsSpace
from supernet.spaces.nb201 import NB201Space
from tests.helpers.modules import nb201, random_batch, search_module
from tests.helpers.paths import ROOT
from tests.helpers.runs import assert_discretize_agrees, run_train_unlogged


def count_candidate_calls(net) -> dict:
    calls: dict = {}
    for m_i, m in enumerate(x for x in net.modules() if isinstance(x, MixedOp)):
        for k, cand in enumerate(m.candidates):

            def hook(mod, inp, out, key=(m_i, k)):
                calls[key] = calls.get(key, 0) + 1

            cand.register_forward_hook(hook)
    return calls


# --- GDAS -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "space", [nb201(), DartsSpace((3, 8, 8), 5, C=4, layers=3, steps=2, multiplier=2)]
)
def test_gdas_computes_only_the_sampled_op_yet_alpha_gets_a_gradient(space):
    torch.manual_seed(0)
    m = search_module(space, GumbelHardSampler())
    for cell in m.supernet.modules():  # per edge: the candidates' hooks see every call
        if isinstance(cell, GroupedEdgesCell):
            cell.group_edges = False
    calls = count_candidate_calls(m.supernet)
    mix = m.strategy.mixing(m.arch.as_dict())
    for cell, w in mix.weights.items():
        sampled = torch.tensor([a[0] for a in mix.active[cell]])
        # Straight-through: the forward weights are exactly one-hot at the sampled op.
        torch.testing.assert_close(
            w.detach(),
            torch.nn.functional.one_hot(sampled, 5 if space.name == "nb201" else 8).float(),
        )
    m.strategy.sampler.setup(seed=0)
    loss, _ = m.loss(random_batch(), m.arch.as_dict())
    per_mixed_op = {}
    for i, k in calls:
        per_mixed_op.setdefault(i, []).append(k)
    assert all(len(ks) == 1 for ks in per_mixed_op.values())  # at most one op per edge computed
    alphas = list(m.arch.alphas.values())
    grads = torch.autograd.grad(loss, alphas)
    assert all(torch.count_nonzero(g) > 0 for g in grads)


# --- temperature schedules ------------------------------------------------------------------


def test_temperature_schedules_follow_their_formulas():
    assert temperature("linear", 10, 0.1, 0, 250) == 10
    assert temperature("linear", 10, 0.1, 249, 250) == pytest.approx(0.1)
    assert temperature("linear", 10, 0.1, 100, 250) == pytest.approx(10 - 9.9 * 100 / 249)
    assert temperature("exponential", 1, 0.33, 0, 150) == 1
    assert temperature("exponential", 1, 0.33, 149, 150) == pytest.approx(0.33)
    ratio = temperature("exponential", 1, 0.33, 11, 150) / temperature(
        "exponential", 1, 0.33, 10, 150
    )
    assert ratio == pytest.approx(0.33 ** (1 / 149))  # a constant factor per epoch
    assert temperature("linear", 10, 0.1, 0, 1) == 10
    gdas = GumbelHardSampler()
    gdas.on_epoch_start(125, 251)
    assert gdas.tau == pytest.approx(5.05)
    with pytest.raises(ValueError, match="cosine"):
        temperature("cosine", 1, 0.1, 0, 5)


def test_snas_soft_weights_every_op_with_gradient():
    a = torch.randn(6, 5, requires_grad=True)
    sampler = GumbelSoftSampler()
    sampler.setup(seed=0)
    mix = sampler({"cell": a})
    assert mix.active is None
    torch.testing.assert_close(mix.weights["cell"].sum(-1), torch.ones(6))
    (mix.weights["cell"][:, 3]).sum().backward()
    assert torch.count_nonzero(a.grad) > 0


# --- DrNAS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["reinforce", "expected"])
def test_snas_resource_constraint_pushes_alpha_away_from_expensive_ops(estimator):
    space = NB201Space((3, 8, 8), 5, C=8, layers=1)
    flops = op_costs(space.ops, 8, (8, 8), "flops")  # none, skip, conv1x1, conv3x3, avg_pool
    assert flops[0] == flops[1] == flops[4] == 0 and 0 < flops[2] < flops[3] == 1
    assert op_costs(space.ops, 8, (8, 8), "params").argmax() == 3
    assert op_costs(space.ops, 8, (8, 8), "mac")[3] == 1
    reg = ResourceCost(scale=1.0, cost="flops", estimator=estimator)
    reg.setup(seed=0, space=space)
    alpha = torch.zeros(6, 5, requires_grad=True)
    grad = sum(torch.autograd.grad(reg({"cell": alpha}), alpha)[0] for _ in range(300)) / 300
    # E[∇] = p_k (c_k − Σ p c): a descent step lowers α of ops costlier than average.
    expected = 0.2 * (flops - flops.mean())
    tol = 1e-6 if estimator == "expected" else 0.015  # Monte Carlo over 300 x 6 edges
    torch.testing.assert_close(grad.mean(0), expected, atol=tol, rtol=0)
    opt = torch.optim.Adam([alpha], lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        reg({"cell": alpha}).backward()
        opt.step()
    p = torch.softmax(alpha.detach(), -1)
    assert (p[:, 3] < 0.2).all() and (p[:, 3] < p[:, 0]).all()


def test_drnas_alpha_gradient_flows_through_the_dirichlet_sample():
    a = torch.randn(6, 5, requires_grad=True)
    sampler = DirichletSampler()
    sampler.setup(seed=0)
    theta = sampler({"cell": a}).weights["cell"]
    assert theta.grad_fn is not None  # a reparameterized (pathwise) sample
    torch.testing.assert_close(theta.sum(-1), torch.ones(6))
    (theta[:, 3] * 2.0).sum().backward()
    assert torch.count_nonzero(a.grad) == a.numel()
    # Seeded and private: the same seed draws the same θ, and the global stream is untouched.
    state = torch.get_rng_state()
    s1, s2 = DirichletSampler(), DirichletSampler()
    s1.setup(seed=3), s2.setup(seed=3)
    torch.testing.assert_close(s1({"cell": a}).weights["cell"], s2({"cell": a}).weights["cell"])

    assert torch.equal(state, torch.get_rng_state())


def test_drnas_kl_regularizer_is_zero_at_the_anchor_and_positive_elsewhere():
    reg = DirichletKL(scale=1e-3)
    assert float(reg({"cell": torch.zeros(6, 5)})) == pytest.approx(0.0, abs=1e-7)
    a = torch.randn(6, 5, requires_grad=True)
    loss = reg({"cell": a, "beta/cell": torch.zeros(6)})
    assert float(loss) > 0
    loss.backward()
    assert torch.count_nonzero(a.grad) > 0


def test_progressive_pruning_keeps_the_strongest_ops():
    space = nb201()
    pruning = ProgressivePruning(at=[0.5], keep=[2])
    m = search_module(space, DirichletSampler(), modifiers=[pruning])
    with torch.no_grad():
        m.arch.alphas["cell"].copy_(torch.arange(5.0).repeat(6, 1))
    pruning.on_epoch_start(0, 4, m)
    assert not pruning.masks  # not yet
    pruning.on_epoch_start(2, 4, m)
    mix = m.strategy.mixing(m.arch.as_dict())
    assert mix.active["cell"] == [[3, 4]] * 6
    assert torch.count_nonzero(mix.weights["cell"][:, :3]) == 0
    assert m.genotype().nodes[0] == (("avg_pool_3x3", 0),)


def test_drnas_progressive_switches_k_6_to_3_in_place_and_stops_computing_pruned_ops():
    torch.manual_seed(0)
    # Cells of 12, 24, 48 channels; per-edge calls, which the candidates' hooks observe.
    space = NB201Space((3, 8, 8), 5, C=12, layers=1, group_edges=False)
    prog = ProgressiveLearning(ks=[6, 3], keep=[2], switch_epochs=[3])
    m = search_module(space, DirichletSampler(), modifiers=[prog])
    mixed = [mo for mo in m.supernet.modules() if isinstance(mo, MixedOp)]
    seen: dict = {}

    def record():
        seen.clear()
        for e, mo in enumerate(mixed):
            for k, cand in enumerate(mo.candidates):
                cand._forward_hooks.clear()

                def hook(mod, inp, out, key=(e, k), C=mo.C):
                    seen[key] = (inp[0].shape[1], C)

                cand.register_forward_hook(hook)

    def weight_step():
        loss, _ = m.loss(random_batch(), {k: a.detach() for k, a in m.arch.as_dict().items()})
        m.weight_optimizer.zero_grad()
        loss.backward()
        m.weight_optimizer.step()

    record()
    weight_step()  # fills momentum buffers of the narrow weights
    assert {c_in * 6 == C for c_in, C in seen.values()} == {True}
    params = list(m.supernet.parameters())
    before = {id(p): p.detach().clone() for p in params}
    prog.on_epoch_start(2, 6, m)
    assert all(mo.partial == 6 for mo in mixed)  # not yet
    with torch.no_grad():
        m.arch.alphas["cell"].copy_(torch.arange(5.0).repeat(6, 1))
    prog.on_epoch_start(3, 6, m)
    assert all(mo.partial == 3 for mo in mixed)
    # Same parameter objects (the optimizer still holds them), learned values in the lead.
    assert [id(p) for p in m.supernet.parameters()] == [id(p) for p in params]
    widened = [p for p in params if p.shape != before[id(p)].shape]
    assert widened
    for p in widened:
        old = before[id(p)]
        torch.testing.assert_close(p.detach()[tuple(slice(0, n) for n in old.shape)], old)
    record()  # hooks on the resized candidates
    weight_step()  # momentum buffers were resized with the weights
    # Only C/3 channels go through the ops, and only the 2 kept ops (3 and 4) are computed.
    assert {k for _, k in seen} == {3, 4}
    assert {c_in * 3 == C for c_in, C in seen.values()} == {True}
    assert m.arch.to_json()["op_masks"]["cell"] == [[0, 0, 0, 1, 1]] * 6
    # Resume: a fresh module given the saved strategy state rebuilds K = 3 before loading.
    state, weights = m.strategy.state_dict(), m.supernet.state_dict()
    fresh = search_module(
        space, DirichletSampler(), modifiers=[ProgressiveLearning([6, 3], [2], [3])]
    )
    fresh.strategy.load_state_dict(state)
    fresh.strategy.restore(fresh)
    fresh.supernet.load_state_dict(weights)
    assert fresh.strategy.mixing(fresh.arch.as_dict()).active["cell"] == [[3, 4]] * 6


# --- PC-DARTS -------------------------------------------------------------------------------


def test_pcdarts_sends_only_c_over_k_channels_through_the_ops():
    torch.manual_seed(0)
    C, K = 16, 4
    mixed = MixedOp(("none", "skip_connect", "nor_conv_3x3"), C, 1, partial_channels=K)
    seen = []
    for cand in mixed.candidates[1:]:
        cand.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[1]))
    x = torch.randn(2, C, 6, 6)
    out = mixed(x, torch.tensor([0.0, 1.0, 0.0]))
    assert seen == [C // K, C // K] and out.shape == x.shape
    # skip_connect with weight 1: the output is x with its channels shuffled into K groups.
    torch.testing.assert_close(out, channel_shuffle(x, K))
    x_cl = x.contiguous(memory_format=torch.channels_last)  # the same values, NHWC kept
    shuffled = channel_shuffle(x_cl, K)
    assert torch.equal(shuffled, channel_shuffle(x, K))
    assert shuffled.is_contiguous(memory_format=torch.channels_last)
    stride2 = MixedOp(("none", "max_pool_3x3"), C, 2, partial_channels=K)
    assert stride2(x, torch.tensor([0.0, 1.0])).shape == (2, C, 3, 3)
    with pytest.raises(ValueError, match="positive integer"):
        MixedOp(("none",), 6, 1, partial_channels=0)


@pytest.mark.parametrize("C, K", [(16, 3), (16, 6), (36, 8)])
def test_partial_channels_refuse_a_k_that_does_not_divide_c(C, K):
    """K ∤ C would leave the shuffle over gcd(C, K) groups (none at all for 16 and 3): refused,
    naming both values and the valid K."""
    with pytest.raises(ValueError, match=rf"K={K} does not divide C={C}.*Valid K for C={C}: 1, 2"):
        MixedOp(("none", "skip_connect"), C, 1, partial_channels=K)


def test_progressive_k_is_checked_before_the_search_not_at_the_switch():
    space = NB201Space((3, 8, 8), 5, C=12, layers=1)
    with pytest.raises(ValueError, match=r"K=5 does not divide C=12"):
        search_module(space, DirichletSampler(), modifiers=[ProgressiveLearning([6, 5], [2], [3])])


@pytest.mark.parametrize(
    "space", [nb201(C=8), DartsSpace((3, 8, 8), 5, C=8, layers=3, steps=2, multiplier=2)]
)
def test_pcdarts_edge_betas_get_gradients_and_shape_the_selection(space):
    torch.manual_seed(0)
    m = search_module(space, SoftmaxSampler(), modifiers=[PartialChannels(4), EdgeNormalization()])
    assert all(mo.partial == 4 for mo in m.supernet.modules() if isinstance(mo, MixedOp))
    arch = m.arch.as_dict()
    assert {f"beta/{c}" for c in space.cell_types} <= set(arch)
    m.strategy.arch_grad(m, random_batch(), random_batch(seed=1))
    for c in space.cell_types:
        assert torch.count_nonzero(m.arch.betas[c].grad) > 0
        assert torch.count_nonzero(m.arch.alphas[c].grad) > 0
    # Selection weighs softmax(α) by the per-node softmax of β.
    probs = m.probabilities()
    for c in space.cell_types:
        node_sums = torch.stack([p.sum() for p in probs[c].sum(-1).split(space.edges_per_node)])
        torch.testing.assert_close(node_sums, torch.ones(len(space.edges_per_node)))
    assert "betas" in m.arch.to_json()


# --- RSWS / SPOS ----------------------------------------------------------------------------


class FakeSupernet(torch.nn.Module):
    """Accuracy = fraction of edges that carry the target op; records every scored arch."""

    def __init__(self, target: list[int]):
        super().__init__()
        self.target = torch.tensor(target)
        self.scored: dict[tuple, float] = {}

    def forward(self, x, weights, active=None, edge_weights=None):
        chosen = torch.tensor([a[0] if a else -1 for a in active["cell"]])
        frac = float((chosen == self.target).float().mean())
        n = x.shape[0]
        right = round(frac * n)
        self.scored[tuple(chosen.tolist())] = right / n
        logits = torch.zeros(n, 2)
        logits[:right, 0] = 1.0  # labels are all 0
        logits[right:, 1] = 1.0
        return logits


BATCHES = [(torch.zeros(60, 1), torch.zeros(60, dtype=torch.long))]


def test_rsws_picks_the_best_sampled_architecture():
    net = FakeSupernet([3, 3, 3, 1, 3, 3])
    sel = RandomSearchSelector(num_samples=30)
    sel.setup(seed=0, space=nb201())
    arch, info = sel(net, BATCHES)
    assert info["best_val_acc"] == max(net.scored.values())
    assert net.scored[arch["cell"]] == info["best_val_acc"]
    assert len(net.scored) == info["evaluated"] > 1


def test_spos_evolution_improves_on_its_initial_population_and_picks_the_best():
    target = [3, 3, 3, 1, 3, 3]
    net = FakeSupernet(target)
    sel = EvolutionSelector(
        population=10, iterations=8, parents=4, mutations=8, crossovers=8, mutation_prob=0.3
    )
    sel.setup(seed=0, space=nb201())
    arch, info = sel(net, BATCHES)
    initial = list(net.scored.values())[:10]
    assert info["best_val_acc"] == max(net.scored.values()) > max(initial)
    assert net.scored[arch["cell"]] == info["best_val_acc"]


def test_spos_evolution_scores_only_candidates_under_the_macs_budget():
    space = NB201Space((3, 8, 8), 5, C=4, layers=1)
    sizes = {"C": 4, "N": 1}
    probe = EvolutionSelector(child_sizes=sizes)
    probe.setup(seed=1, space=space)
    macs = sorted(probe.macs(sample_arch(space, probe.generator)) for _ in range(30))
    budget = macs[len(macs) // 2]  # about half of the random architectures are over it
    net = FakeSupernet([3, 3, 3, 3, 3, 3])  # the best (all conv3x3) is the costliest
    sel = EvolutionSelector(
        population=6,
        iterations=3,
        parents=3,
        mutations=4,
        crossovers=4,
        mutation_prob=0.5,
        max_macs=budget,
        child_sizes=sizes,
    )
    sel.setup(seed=0, space=space)
    arch, info = sel(net, BATCHES)
    assert len(net.scored) == info["evaluated"] > 6
    assert all(sel.macs({"cell": a}) <= budget for a in net.scored)
    assert info["best_macs"] <= budget and max(macs) > budget
    assert any(sel.macs(dict(k)) > budget for k in sel._macs)  # over-budget ones were drawn


def test_uniform_sampling_is_seeded_and_darts_nodes_keep_two_real_inputs():
    space = DartsSpace((3, 8, 8), 5, C=4, layers=3)
    a = sample_arch(space, torch.Generator().manual_seed(1))
    assert a == sample_arch(space, torch.Generator().manual_seed(1))
    first = 0
    for n in space.edges_per_node:
        node = a["normal"][first : first + n]
        assert sum(k >= 0 for k in node) == 2 and 0 not in node  # never `none`
        first += n
    sampler = UniformPathSampler()
    sampler.setup(seed=0, space=space)
    mix = sampler({"normal": torch.zeros(14, 8), "reduce": torch.zeros(14, 8)})
    assert sum(len(x) for x in mix.active["normal"]) == 8


@pytest.mark.parametrize("sampler_cls", [GumbelHardSampler, GumbelSoftSampler, DirichletSampler])
def test_samplers_same_seed_same_draws(sampler_cls):
    a = torch.randn(6, 5)
    draws = []
    for _ in range(2):
        s = sampler_cls()
        s.setup(seed=5)
        draws.append(s({"cell": a}).weights["cell"])
    torch.testing.assert_close(draws[0], draws[1])


# --- every (space x strategy) composition, end to end ----------------------------------------

STRATEGIES = sorted(p.stem for p in (ROOT / "conf" / "strategy").glob("*.yaml"))
SPACES = sorted(p.stem for p in (ROOT / "conf" / "search_space").glob("*.yaml"))
SMALL_SELECTORS = {
    "rsws": ["strategy.selector.num_samples=4"],
    "spos": [
        "strategy.selector.population=4",
        "strategy.selector.iterations=1",
        "strategy.selector.parents=2",
        "strategy.selector.mutations=2",
        "strategy.selector.crossovers=2",
    ],
}
SMALL_SELECTORS["sandwich"] = SMALL_SELECTORS["spos"]


# Partial channels need a C that every stage's K divides (smoke's C=4 does not take K=6).
PARTIAL_CHANNEL_SIZES = {"drnas_progressive": ["search_space.C=12"]}
# P-DARTS' stages (5, 11, 17 cells) at a smoke depth: three fits of 3 cells, 8 -> 4 -> 2 ops.
PARTIAL_CHANNEL_SIZES["pdarts"] = [
    "strategy.stages=[{layers:3,keep:4},{layers:3,keep:2},{layers:3}]"
]


def search_then_discretize(tmp_path, monkeypatch, strategy: str, *overrides: str) -> dict:
    """Searches, then discretizes the saved α; asserts both give the same genotype file."""
    # Only the final figures: the per-epoch ones are the same code, and drawing them was half
    # of each run's time (tests/run/test_workflow.py checks them). The final ones are built for
    # every composition's genotype but not rendered to PNG (rendering was 1.2 s of a 2.9 s
    # DARTS-space run; tests/run/test_workflow.py and tests/search/test_figures.py check the PNGs).
    monkeypatch.setattr("nas.search.figures.save_png", lambda fig, path: Path(path))
    common = [f"strategy={strategy}", "data=synthetic", "data.num_samples=64",
              "logger.alpha_images=false"]  # fmt: skip
    common += SMALL_SELECTORS.get(strategy, []) + PARTIAL_CHANNEL_SIZES.get(strategy, [])
    common += overrides  # the caller's last: they may replace the strategy's sizes
    assert run_train_unlogged(monkeypatch, tmp_path / "s", "stage=search", *common) == 0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["strategy"] == strategy
    if strategy in SMALL_SELECTORS:
        assert summary["selection"]["best_val_acc"] is not None
    assert_discretize_agrees(tmp_path, monkeypatch, common)
    return summary


# Mechanics that do not apply to the mbconv chain: each refuses it with an error at the start.
NOT_APPLICABLE = {
    ("mbconv", "darts_minus"): "DARTS-' auxiliary skip needs a skip_connect candidate",
    ("mbconv", "drnas_progressive"): "partial channels: mbconv layers change width",
    ("mbconv", "pcdarts"): "partial channels: mbconv layers change width",
    ("mbconv", "fairdarts"): "FairDARTS' threshold rule has forms for darts and nb201 only",
    ("mbconv", "snas_constrained"): "ResourceCost prices the supernet/ops.py registry's ops",
    # A model's own choices (search_space=module) are no cell edges with a skip candidate.
    ("module", "darts_minus"): "DARTS-' auxiliary skip needs a skip_connect candidate",
    ("module", "drnas_progressive"): "partial channels: a model's choices are no cell edges",
    ("module", "pcdarts"): "partial channels: a model's choices are no cell edges",
    ("module", "fairdarts"): "FairDARTS' threshold rule has forms for darts and nb201 only",
    ("module", "snas_constrained"): "ResourceCost prices the supernet/ops.py registry's ops",
    # The ViT supernet is a built-in model of the module space: the same five do not apply.
    ("vit", "darts_minus"): "DARTS-' auxiliary skip needs a skip_connect candidate",
    ("vit", "drnas_progressive"): "partial channels: a model's choices are no cell edges",
    ("vit", "pcdarts"): "partial channels: a model's choices are no cell edges",
    ("vit", "fairdarts"): "FairDARTS' threshold rule has forms for darts and nb201 only",
    ("vit", "snas_constrained"): "ResourceCost prices the supernet/ops.py registry's ops",
    ("vit", "pdarts"): "P-DARTS' stages change the depth, and with it the ViT's decisions",
    # The sandwich rule needs a largest and a smallest path: sized decisions only.
    **{
        (space, "sandwich"): "the sandwich rule needs sized decisions (largest, smallest)"
        for space in ("darts", "nb201", "mbconv")
    },
    ("gpt", "darts_minus"): "DARTS-' auxiliary skip needs a skip_connect candidate",
    ("gpt", "drnas_progressive"): "partial channels: a model's choices are no cell edges",
    ("gpt", "pcdarts"): "partial channels: a model's choices are no cell edges",
    ("gpt", "fairdarts"): "FairDARTS' threshold rule has forms for darts and nb201 only",
    ("gpt", "snas_constrained"): "ResourceCost prices the supernet/ops.py registry's ops",
    ("gpt", "pdarts"): "P-DARTS' stages change the depth, and with it the GPT's decisions",
}
# P-DARTS on a model: its decisions have 2 or 3 choices, so a stage keeps at most 2.
SPACE_OVERRIDES = {("module", "pdarts"): ["strategy.stages=[{layers:1,keep:2},{layers:2}]"]}
# A language model reads token windows (data=text), each decision with two choices.
GPT_SMALL = ["data=text", "search_space.n_embd=[8,16]", "search_space.n_layer=[1,2]",
             "search_space.n_head=[1,2]", "search_space.intermediate_size=[16,32]",
             "search_space.head_size=4", "data.input_shape=[16]"]  # fmt: skip
SPACE_OVERRIDES.update({("gpt", s): GPT_SMALL for s in STRATEGIES})


@pytest.mark.parametrize("space, strategy", sorted(NOT_APPLICABLE))
def test_a_mechanic_that_does_not_apply_to_a_space_says_so(space, strategy):
    """The pairs skipped below fail before any work, naming the space."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import train
    from nas.run import builders
    from nas.run.input_check import check_inputs

    GlobalHydra.instance().clear()
    with initialize_config_dir(train.CONFIG_DIR, version_base="1.3", job_name="train"):
        cfg = compose(
            "config",
            overrides=["experiment=smoke", "data=synthetic", f"search_space={space}",
                       f"strategy={strategy}", *PARTIAL_CHANNEL_SIZES.get(strategy, []),
                       *SPACE_OVERRIDES.get((space, strategy), [])],
        )  # fmt: skip
    with pytest.raises(ValueError, match=space):
        check_inputs(cfg)  # the run's checks before any work (P-DARTS' stages)
        module = builders.search_module(cfg, builders.space_from_config(cfg))
        module.genotype()  # a selection rule that has no form for the space


# In the MobileNet chain, one strategy per mechanic in the default run (softmax, hard and
# uniform single paths, binary gates, soft Gumbel with a latency loss, staged depth); every
# applicable strategy with -m slow. The DARTS cells run every strategy by default; NAS-Bench-201
# every strategy but the variants of one kept there (drnas_kl, drnas_progressive: drnas;
# sdarts_rs: sdarts_adv; snas_constrained: snas) and the two hardware-cost ones (run on mbconv).
DEFAULT_IN = {
    "mbconv": {"darts", "gdas", "spos", "proxyless", "fbnet", "pdarts"},
    "module": {"darts", "gdas", "spos", "proxyless", "drnas"},
    "vit": {"darts", "gdas", "spos", "fbnet"},
    "gpt": {"darts", "gdas", "drnas", "spos", "proxyless"},
    "nb201": set(STRATEGIES)
    - {"drnas_kl", "drnas_progressive", "sdarts_rs", "snas_constrained", "proxyless", "fbnet"},
}
COMPOSITIONS = [
    (space, s)
    if s in DEFAULT_IN.get(space, STRATEGIES)
    else pytest.param(space, s, marks=pytest.mark.slow)
    for space in SPACES
    for s in STRATEGIES
]


@pytest.mark.parametrize("space, strategy", COMPOSITIONS)
def test_every_composition_searches_and_discretizes(space, strategy, tmp_path, monkeypatch):
    if (space, strategy) in NOT_APPLICABLE:
        pytest.skip(f"{strategy} x {space}: {NOT_APPLICABLE[space, strategy]}")
    summary = search_then_discretize(
        tmp_path, monkeypatch, strategy, f"search_space={space}",
        *SPACE_OVERRIDES.get((space, strategy), []),
    )  # fmt: skip
    assert summary["space"] == space
    if space == "nb201":
        assert summary["genotype"].startswith("|") and summary["genotype"].count("~") == 6
        assert "benchmark" in summary


# One strategy per mechanic that meets the fixed reduction cell in its own way (plain softmax,
# hard sampling, K change and pruning, partial channels with β, a model-based selector,
# independent sigmoid weights, staged depth) in the default run; every strategy with -m slow.
FIXED_REDUCTION_DEFAULT = {
    "darts",
    "gdas",
    "drnas_progressive",
    "pcdarts",
    "spos",
    "fairdarts",
    "pdarts",
}


@pytest.mark.parametrize(
    "strategy",
    [
        s if s in FIXED_REDUCTION_DEFAULT else pytest.param(s, marks=pytest.mark.slow)
        for s in STRATEGIES
    ],
)
def test_every_strategy_with_a_fixed_reduction_cell(strategy, tmp_path, monkeypatch):
    if ("darts", strategy) in NOT_APPLICABLE:
        pytest.skip(f"{strategy} x darts: {NOT_APPLICABLE['darts', strategy]}")
    summary = search_then_discretize(
        tmp_path, monkeypatch, strategy, "search_space=darts", "search_space.reduce_cell=gdas_frc"
    )
    assert summary["genotype"].endswith("reduce=[], reduce_concat=[], reduce_cell='gdas_frc')")
