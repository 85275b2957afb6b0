"""ProxylessNAS' binarized path gates (``nas/strategies/samplers/binary_gates.py``): one path in
the weight step, two in the arch step, the gate gradient of eq. 4, sampling by softmax(α), the
rescaling of the updated α, seeded and resumable sampling, and a search through the loop."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from nas.search.module import SearchModule
from nas.strategies import Strategy
from nas.strategies.arch_grad import FirstOrder
from nas.strategies.samplers import BinaryGateSampler
from supernet.genotypes import MBCONV_OPS, MBCONV_ZERO
from supernet.spaces.mbconv import MBConvSpace
from tests.helpers.modules import nb201, random_batch
from tests.helpers.runs import run_train_unlogged


def mbconv() -> MBConvSpace:
    return MBConvSpace((3, 8, 8), 5, C=4, layers=2)


def sampler(seed: int = 0, space=None, **kw) -> BinaryGateSampler:
    s = BinaryGateSampler(**kw)
    s.setup(seed=seed, space=space)
    return s


def module(space, seed: int = 0) -> SearchModule:
    strategy = Strategy("proxyless", BinaryGateSampler(), FirstOrder())
    return SearchModule(
        space,
        strategy,
        weight_optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        arch_optimizer=partial(torch.optim.Adam, lr=6e-3, betas=(0.0, 0.999)),
        seed=seed,
    )


def hand_gradient(alpha: list[float], sampled: list[int], dl_dg: list[float]) -> list[float]:
    """Eq. 4 written out: ∂L/∂α_i = Σ_j ∂L/∂g_j p_j (δ_ij − p_i) over the sampled paths, with p
    the softmax of α over them; 0 for the others."""
    import math

    z = sum(math.exp(alpha[j]) for j in sampled)
    p = {j: math.exp(alpha[j]) / z for j in sampled}
    out = [0.0] * len(alpha)
    for i in sampled:
        out[i] = sum(dl_dg[j] * p[j] * ((1.0 if i == j else 0.0) - p[i]) for j in sampled)
    return out


# --- which ops are computed -----------------------------------------------------------------


@pytest.mark.parametrize("make_space", [nb201, mbconv])
def test_one_path_in_the_weight_step_two_in_the_arch_step(make_space):
    space = make_space()
    m = module(space)
    arch = m.arch.as_dict()
    cell = space.cell_types[0]
    n_ops = len(space.ops)
    # Weight step: α detached, one sampled path per row, weight exactly 1.
    mix = m.strategy.mixing({k: a.detach() for k, a in arch.items()})
    assert all(len(ops) == 1 for ops in mix.active[cell])
    chosen = torch.tensor([ops[0] for ops in mix.active[cell]])
    assert torch.equal(mix.weights[cell], torch.nn.functional.one_hot(chosen, n_ops).float())
    # Arch step: α requires grad, two distinct sampled paths per row, one-hot gates among them.
    mix = m.strategy.mixing(arch)
    assert all(len(set(ops)) == 2 for ops in mix.active[cell])
    w = mix.weights[cell].detach()
    assert torch.equal(w.sum(-1), torch.ones(len(w)))
    for row, ops in zip(w, mix.active[cell]):
        assert int(row.argmax()) in ops and set(row.nonzero().flatten().tolist()) <= set(ops)
    assert mix.weights[cell].grad_fn is not None
    # The arch-step loss reaches α: per row only the two sampled entries, summing to zero (a
    # softmax Jacobian over the pair).
    x, y = random_batch()
    loss = torch.nn.functional.cross_entropy(m.supernet(x, mix.weights, mix.active), y)
    (grad,) = torch.autograd.grad(loss, [arch[cell]])
    assert torch.count_nonzero(grad) > 0
    for g, ops in zip(grad, mix.active[cell]):
        others = [i for i in range(n_ops) if i not in ops]
        assert torch.count_nonzero(g[others]) == 0
        assert abs(float(g[ops].sum())) < 1e-6


def test_mbconv_never_samples_zero_where_a_layer_cannot_skip():
    space = mbconv()
    s = sampler(space=space)
    zero = MBCONV_OPS.index(MBCONV_ZERO)
    alpha = torch.zeros(len(space.edges), len(MBCONV_OPS))
    alpha[:, zero] = 5.0  # zero is by far the most likely everywhere
    for _ in range(20):
        for a in (alpha, alpha.clone().requires_grad_()):
            active = s({"layers": a}).active["layers"]
            for layer in space.fixed_layers:
                assert zero not in active[layer]
    with torch.no_grad():  # validation: argmax among the allowed ops
        active = s({"layers": alpha}).active["layers"]
    assert all((ops == [zero]) == (i not in space.fixed_layers) for i, ops in enumerate(active))


# --- the gate gradient ----------------------------------------------------------------------


def test_gate_gradient_matches_eq_4_by_hand():
    alpha_values = [0.3, -0.2, 0.5, 0.1, -0.4]
    alpha = torch.tensor([alpha_values], dtype=torch.float64, requires_grad=True)
    s = sampler(seed=1)
    mix = s({"cell": alpha})
    sampled = mix.active["cell"][0]
    assert len(sampled) == 2
    # A loss linear in the gates: ∂L/∂g = c.
    c = torch.tensor([[1.5, -2.0, 0.7, 3.0, -1.1]], dtype=torch.float64)
    torch.testing.assert_close(mix.weights["cell"].sum(), torch.tensor(1.0, dtype=torch.float64))
    (mix.weights["cell"] * c).sum().backward()
    expected = hand_gradient(alpha_values, sampled, c[0].tolist())
    torch.testing.assert_close(alpha.grad[0], torch.tensor(expected, dtype=torch.float64))
    assert alpha.grad[0, sampled].sum().abs() < 1e-12  # a softmax Jacobian: Σ_i ∂L/∂α_i = 0
    # All-paths mode: the same formula over every op, no renormalisation.
    alpha.grad = None
    mix = sampler(seed=1, arch_paths=5)({"cell": alpha})
    assert mix.active["cell"] == [[0, 1, 2, 3, 4]]
    (mix.weights["cell"] * c).sum().backward()
    expected = hand_gradient(alpha_values, [0, 1, 2, 3, 4], c[0].tolist())
    torch.testing.assert_close(alpha.grad[0], torch.tensor(expected, dtype=torch.float64))


def test_gate_gradient_through_the_supernet_is_eq_4_of_its_gate_gradients():
    """α's gradient from the supernet's loss equals eq. 4 applied to ∂L/∂g of the same forward
    with the gates as a leaf."""
    torch.manual_seed(0)
    m = module(nb201())
    alpha = m.arch.alphas["cell"]
    with torch.no_grad():
        alpha.copy_(torch.randn_like(alpha))
    batch = random_batch()
    mix = m.strategy.mixing(m.arch.as_dict())
    x, y = batch
    loss = torch.nn.functional.cross_entropy(m.supernet(x, mix.weights, mix.active), y)
    (grad,) = torch.autograd.grad(loss, [alpha])
    gates = mix.weights["cell"].detach().requires_grad_()
    loss = torch.nn.functional.cross_entropy(m.supernet(x, {"cell": gates}, mix.active), y)
    (dl_dg,) = torch.autograd.grad(loss, [gates])
    for e, ops in enumerate(mix.active["cell"]):
        expected = hand_gradient(alpha[e].tolist(), ops, dl_dg[e].tolist())
        torch.testing.assert_close(grad[e], torch.tensor(expected), rtol=1e-4, atol=1e-7)


# --- sampling distribution ------------------------------------------------------------------


def test_sampling_follows_softmax_alpha():
    row = torch.tensor([1.0, 0.0, -0.5, 0.5, -1.0])
    p = torch.softmax(row, -1)
    s = sampler(seed=0)
    alpha = row.repeat(4000, 1)
    counts, pairs = torch.zeros(5), torch.zeros(5)
    for _ in range(5):  # 20 000 draws
        for ops in s({"cell": alpha}).active["cell"]:
            counts[ops[0]] += 1
        for ops in s({"cell": alpha.clone().requires_grad_()}).active["cell"]:
            pairs[ops] += 1
    torch.testing.assert_close(counts / counts.sum(), p, atol=0.012, rtol=0)
    # Two without replacement: P(i ∈ S) = p_i + Σ_{j≠i} p_j p_i / (1 − p_j).
    inclusion = torch.stack(
        [p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(5) if j != i) for i in range(5)]
    )
    torch.testing.assert_close(pairs / 20000, inclusion, atol=0.015, rtol=0)
    assert torch.equal(s.probabilities({"cell": row[None]})["cell"][0], p)


# --- seeds and resume -----------------------------------------------------------------------


def test_seeded_sampling_and_exact_resume():
    alpha = torch.randn(6, 5)

    def draws(s, n, arch):
        a = alpha.clone().requires_grad_() if arch else alpha
        return [s({"cell": a}).active["cell"] for _ in range(n)]

    a, b = sampler(seed=3), sampler(seed=3)
    assert draws(a, 4, False) == draws(b, 4, False)
    assert draws(a, 2, True) == draws(b, 2, True)
    assert draws(sampler(seed=4), 4, False) != draws(sampler(seed=3), 4, False)
    state = torch.get_rng_state()
    saved = a.state_dict()
    expected = draws(a, 3, False) + draws(a, 3, True)
    fresh = BinaryGateSampler()
    fresh.load_state_dict(saved)
    assert draws(fresh, 3, False) + draws(fresh, 3, True) == expected
    assert torch.equal(state, torch.get_rng_state())  # the global stream is untouched


# --- rescaling after the α step -------------------------------------------------------------


def test_rescaling_keeps_the_unsampled_paths_probabilities():
    torch.manual_seed(0)
    alpha = torch.randn(3, 5, requires_grad=True)
    s = sampler(seed=2)
    p_before = torch.softmax(alpha.detach(), -1)
    mix = s({"cell": alpha})
    (mix.weights["cell"] * torch.randn(3, 5)).sum().backward()
    opt = torch.optim.Adam([alpha], lr=0.1, betas=(0.0, 0.999))
    opt.step()
    moved = torch.softmax(alpha.detach(), -1)
    strategy = Strategy("proxyless", s, FirstOrder())
    strategy.after_arch_step({"cell": alpha})
    p_after = torch.softmax(alpha.detach(), -1)
    for e, ops in enumerate(mix.active["cell"]):
        others = [i for i in range(5) if i not in ops]
        torch.testing.assert_close(p_after[e, others], p_before[e, others])
        assert not torch.allclose(moved[e, others], p_before[e, others])  # the step moved them
        # Within the pair, the step's ratio is kept.
        torch.testing.assert_close(
            p_after[e, ops[0]] / p_after[e, ops[1]], moved[e, ops[0]] / moved[e, ops[1]]
        )
    before = alpha.detach().clone()
    strategy.after_arch_step({"cell": alpha})  # once per sample: a second call does nothing
    assert torch.equal(alpha.detach(), before)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="arch_paths"):
        BinaryGateSampler(arch_paths=1)
    with pytest.raises(ValueError, match="eval_path"):
        BinaryGateSampler(eval_path="mean")


# --- through the search loop ----------------------------------------------------------------


def test_a_search_updates_alpha_through_the_two_path_step(tmp_path, monkeypatch):
    """strategy=proxyless on mbconv with α steps from the first epoch: α moves, and per row at
    most 2 entries per α step moved (2 steps here)."""
    overrides = [
        "stage=search",
        "strategy=proxyless",
        "search_space=mbconv",
        "data=synthetic",
        "data.num_samples=64",
        "strategy.arch_start_epoch=0",
        # The gate mechanics alone: the latency penalty's expectation reaches every α entry.
        "strategy.regularizers=[]",
    ]
    assert run_train_unlogged(monkeypatch, tmp_path, *overrides) == 0
    saved = json.loads((tmp_path / "alphas.json").read_text())
    alpha = torch.tensor(saved["alphas"]["layers"])
    init = torch.randn(alpha.shape, generator=torch.Generator().manual_seed(0)) * 1e-3
    changed = (alpha - init).abs() > 1e-6
    assert changed.any()
    assert (changed.sum(-1) <= 4).all()


def test_a_search_with_the_latency_penalty_takes_alpha_steps(tmp_path, monkeypatch):
    """The full strategy (multiplicative latency penalty on the two-path loss) through α steps."""
    overrides = [
        "stage=search",
        "strategy=proxyless",
        "search_space=nb201",
        "data=synthetic",
        "data.num_samples=64",
        "strategy.arch_start_epoch=0",
    ]
    assert run_train_unlogged(monkeypatch, tmp_path, *overrides) == 0
    alpha = torch.tensor(json.loads((tmp_path / "alphas.json").read_text())["alphas"]["cell"])
    init = torch.randn(alpha.shape, generator=torch.Generator().manual_seed(0)) * 1e-3
    assert torch.isfinite(alpha).all() and ((alpha - init).abs() > 1e-6).any()
