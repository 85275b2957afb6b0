"""DARTS-' auxiliary skip (Chu et al., ICLR 2021) and SDARTS' perturbations (Chen & Hsieh,
ICML 2020): the β schedule, the exactness of the skip-weight formulation, the ε-ball and
loss-ascent properties of the perturbations, seeding, and second-order composition."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from nas.search.module import SearchModule
from nas.strategies import Strategy
from nas.strategies.arch_grad import FirstOrder
from nas.strategies.modifiers import AdversarialPerturbation, AuxiliarySkip, RandomSmoothing
from nas.strategies.modifiers.auxiliary_skip import beta_schedule
from nas.strategies.modifiers.perturbation import WEIGHTS_PREFIX, simplex_clip
from nas.strategies.samplers import SoftmaxSampler
from supernet.mixed import MixedOp
from supernet.spaces.darts import DartsSpace
from tests.helpers.modules import nb201, random_batch
from tests.helpers.runs import run_train


def module(space, modifiers, seed=0) -> SearchModule:
    strategy = Strategy("test", SoftmaxSampler(), FirstOrder(), modifiers=list(modifiers))
    m = SearchModule(
        space,
        strategy,
        weight_optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        arch_optimizer=partial(torch.optim.Adam, lr=3e-4),
        alpha_init_std=1.0,  # spread-out weights, so perturbations matter
        seed=seed,
    )
    return m


def detached(m: SearchModule) -> dict[str, torch.Tensor]:
    return {k: a.detach() for k, a in m.arch.as_dict().items()}


# --- DARTS- ---------------------------------------------------------------------------------


def test_beta_follows_the_official_linear_schedule_and_ends_at_zero():
    aux = AuxiliarySkip(beta=1.0, decay="linear")
    aux.setup(space=nb201())
    seen = []
    for e in range(50):
        aux.on_epoch_start(e, 50)
        seen.append(aux.beta)
        assert aux.beta == pytest.approx((50 - e) / 50)  # DARTS- src/utils.py DecayScheduler
    assert seen[0] == 1.0 and seen[-1] == pytest.approx(0.02)
    assert all(a > b for a, b in zip(seen, seen[1:]))
    aux.on_epoch_start(50, 50)  # the end of the search
    assert aux.beta == 0.0
    w = {"cell": torch.softmax(torch.randn(6, 5), -1)}
    out = aux.mixing(SoftmaxSampler()({"cell": torch.log(w["cell"])}), {})
    torch.testing.assert_close(out.weights["cell"], w["cell"])  # no auxiliary weight left
    assert beta_schedule(0, 10, 2.0, "cosine") == 2.0 and beta_schedule(10, 10, 2.0, "cosine") == 0
    assert AuxiliarySkip(0.5).state_dict() == {"beta": 0.5}
    with pytest.raises(ValueError, match="decay"):
        AuxiliarySkip(decay="step")


def test_aux_skip_mixing_equals_the_explicit_sum_in_the_supernet():
    """β on skip_connect's weight == Σ w_k o_k(x) + β · aux(x) on every edge, where the
    reference supernet has the auxiliary identity as a separate, sixth candidate (as the
    official ``MixedOp.auxiliary_op``). NAS-Bench-201: every edge is stride 1."""
    space = nb201()
    reference = nb201(ops=(*space.ops, "skip_connect"))  # candidate 5: the auxiliary Identity()
    torch.manual_seed(0)
    net = space.build_supernet().eval()
    ref = reference.build_supernet().eval()
    ref.load_state_dict(net.state_dict())  # identities have no parameters: the same network
    alphas = {"cell": torch.randn(6, 5)}
    x, _ = random_batch()
    aux = AuxiliarySkip(beta=0.7)
    aux.setup(space=space)
    mix = aux.mixing(SoftmaxSampler()(alphas), alphas)
    implicit = net(x, mix.weights, mix.active, mix.edge_weights)
    plain = torch.softmax(alphas["cell"], -1)
    explicit_weights = torch.cat([plain, torch.full((6, 1), 0.7)], dim=1)
    explicit = ref(x, {"cell": explicit_weights})
    torch.testing.assert_close(implicit, explicit)
    assert not torch.allclose(implicit, net(x, {"cell": plain}))  # β changed the output


@pytest.mark.parametrize("stride", [1, 2])
def test_aux_skip_on_a_darts_edge_adds_beta_times_the_skip_candidate(stride):
    """Stride 1: the identity. Stride 2: skip_connect's own FactorizedReduce (the official code
    builds a separate one; documented in auxiliary_skip.py)."""
    space = DartsSpace((3, 8, 8), 5, C=4, layers=3, steps=2, multiplier=2)
    torch.manual_seed(0)
    edge = MixedOp(space.ops, 4, stride).eval()
    k = list(space.ops).index("skip_connect")
    x = torch.randn(2, 4, 8, 8)
    w = torch.softmax(torch.randn(len(space.ops)), -1)
    bumped = w.clone()
    bumped[k] += 0.3
    expected = edge(x, w) + 0.3 * edge.candidates[k](x)
    torch.testing.assert_close(edge(x, bumped), expected)
    if stride == 1:
        torch.testing.assert_close(edge.candidates[k](x), x)


def test_selection_uses_alpha_only():
    m = module(nb201(), [AuxiliarySkip(beta=1.0)])
    torch.testing.assert_close(
        m.probabilities()["cell"], torch.softmax(m.arch.alphas["cell"].detach(), -1)
    )


# --- SDARTS ---------------------------------------------------------------------------------


def test_epsilon_grows_linearly_from_003_to_the_max():
    rs = RandomSmoothing(epsilon=0.3, epsilon_min=0.03)
    rs.on_epoch_start(0, 50)
    assert rs.epsilon == pytest.approx(0.03)
    rs.on_epoch_start(25, 50)
    assert rs.epsilon == pytest.approx(0.03 + 0.27 * 0.5)  # SmoothDARTS train_search.py


def test_simplex_clip_is_the_official_clip():
    w = torch.tensor([[0.5, -0.2, 0.9], [-0.1, -0.3, -0.2], [0.2, 0.2, 0.1]])
    out = simplex_clip(w)
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.0, 0.9]) / 1.4)
    torch.testing.assert_close(out[1], torch.tensor([1.0, 0.0, 0.0]))  # argmax before clamp
    torch.testing.assert_close(out[2], torch.tensor([0.4, 0.4, 0.2]))


def _draw(m, rs, batch):
    out = rs.perturb_weight_step(m, detached(m), batch)
    return out[WEIGHTS_PREFIX + "cell"]


@pytest.mark.parametrize("clip", [True, False])
def test_random_smoothing_is_in_the_ball_seeded_and_redrawn(clip):
    space, batch = nb201(), random_batch()
    draws = []
    for seed in (3, 3, 4):
        rs = RandomSmoothing(epsilon=0.2, epsilon_min=0.2, clip=clip)
        m = module(space, [rs], seed=seed)  # the module's seed seeds the modifier
        clean = torch.softmax(m.arch.alphas["cell"].detach(), -1)
        draws.append(_draw(m, rs, batch))
        delta = rs.last_delta["cell"]
        assert delta.abs().max() <= 0.2 + 1e-7
        expected = simplex_clip(clean + delta) if clip else clean + delta
        torch.testing.assert_close(draws[-1], expected)
        if not clip:
            assert (draws[-1] - clean).abs().max() <= 0.2 + 1e-6
    torch.testing.assert_close(draws[0], draws[1])  # the seed fixes the draw
    assert not torch.allclose(draws[0], draws[2])
    if clip:
        assert (draws[0] >= 0).all()
        torch.testing.assert_close(draws[0].sum(-1), torch.ones(6))
    # A fresh draw every step, and the saved state replays it exactly (resume).
    rs = RandomSmoothing(epsilon=0.2, epsilon_min=0.2, clip=clip)
    m = module(space, [rs], seed=3)
    _draw(m, rs, batch)
    state = m.strategy.state_dict()
    second = _draw(m, rs, batch)
    assert not torch.allclose(second, draws[0])
    resumed = module(space, [RandomSmoothing(epsilon=0.01, clip=clip)], seed=3)
    resumed.strategy.load_state_dict(state)
    torch.testing.assert_close(_draw(resumed, resumed.strategy.modifiers[0], batch), second)


def test_the_weight_step_mixes_with_the_perturbed_weights():
    m = module(nb201(), [RandomSmoothing(epsilon=0.3, epsilon_min=0.3)])
    arch = m.strategy.weight_step_arch(m, detached(m), random_batch())
    mixed = m.strategy.mixing(arch).weights["cell"]
    torch.testing.assert_close(mixed, arch[WEIGHTS_PREFIX + "cell"])
    assert not torch.allclose(mixed, torch.softmax(m.arch.alphas["cell"].detach(), -1))
    # α itself is untouched, and a plain mixing (arch step, validation) is not perturbed.
    torch.testing.assert_close(
        m.strategy.mixing(detached(m)).weights["cell"],
        torch.softmax(m.arch.alphas["cell"].detach(), -1),
    )


@pytest.mark.parametrize("clip", [True, False])
def test_adversarial_perturbation_stays_in_the_ball_and_raises_the_loss(clip):
    space, batch = nb201(), random_batch(n=8)
    adv = AdversarialPerturbation(epsilon=0.1, epsilon_min=0.1, clip=clip, steps=3)
    m = module(space, [adv])  # its mixing hook substitutes the weights it returns
    m.supernet.train()
    arch = detached(m)
    w = adv.perturb_weight_step(m, arch, batch)[WEIGHTS_PREFIX + "cell"]
    assert m.supernet.training  # the eval-mode attack restores the mode
    clean = torch.softmax(arch["cell"], -1)
    delta = adv.last_delta["cell"]
    assert delta.abs().max() <= 0.1 + 1e-6
    torch.testing.assert_close(w, simplex_clip(clean + delta) if clip else clean + delta)
    if not clip:
        assert (w - clean).abs().max() <= 0.1 + 1e-6
    m.supernet.eval()  # the attack's own comparison: same batch, same mode
    with torch.no_grad():
        at_alpha = m.loss(batch, arch)[0]
        at_perturbed = m.loss(batch, {**arch, WEIGHTS_PREFIX + "cell": w})[0]
    assert at_perturbed >= at_alpha
    assert not torch.equal(w, clean)  # on this batch the attack found a higher loss


def test_sdarts_refuses_a_non_softmax_sampler():
    from nas.strategies.samplers import GumbelSoftSampler

    space = nb201()
    strategy = Strategy("x", GumbelSoftSampler(), FirstOrder(), modifiers=[RandomSmoothing()])
    m = SearchModule(
        space,
        strategy,
        weight_optimizer=partial(torch.optim.SGD, lr=0.05),
        arch_optimizer=partial(torch.optim.Adam, lr=3e-4),
    )
    with pytest.raises(TypeError, match="softmax"):
        strategy.weight_step_arch(m, detached(m), random_batch())


# --- second order composes -------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["sdarts_rs", "darts_minus"])
def test_second_order_variant_searches(strategy, tmp_path, monkeypatch):
    overrides = [
        "stage=search",
        f"strategy={strategy}",
        "strategy.arch_grad._target_=nas.strategies.arch_grad.SecondOrder",
        "+strategy.arch_grad.r=0.01",
        "search_space=nb201",
        "data=synthetic",
        "data.num_samples=64",
    ]
    assert run_train(monkeypatch, tmp_path, *overrides, logger="none") == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["strategy"] == strategy
