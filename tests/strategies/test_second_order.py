"""Second-order DARTS: the finite-difference hypergradient against autograd's exact one."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from nas.strategies.arch_grad import FirstOrder, SecondOrder
from tests.helpers.modules import random_batch, tiny_search_module


def sgd_update(w, g, buf, group):
    """torch.optim.SGD's update direction, written out from its documentation (not our code)."""
    mu, damp, wd = group["momentum"], group["dampening"], group["weight_decay"]
    d_p = g + wd * w
    if mu:
        buf = d_p if buf is None else mu * buf + (1 - damp) * d_p
        d_p = d_p + mu * buf if group["nesterov"] else buf
    return w - group["lr"] * d_p


def exact_hypergradient(module, train, val):
    """d/dα L_val(w', α), w' = the SGD step from ∇w L_train(w, α), differentiated through ∇w."""
    opt = module.weight_optimizer
    group = opt.param_groups[0]
    params = dict(module.supernet.named_parameters())
    alphas = list(module.arch.alphas.values())
    train_loss, _ = module.loss(train, module.arch.as_dict())
    grads = torch.autograd.grad(train_loss, list(params.values()), create_graph=True)
    unrolled = {
        name: sgd_update(w, g, opt.state.get(w, {}).get("momentum_buffer"), group)
        for (name, w), g in zip(params.items(), grads)
    }
    x, y = val
    mixing = module.strategy.sampler(module.arch.as_dict())
    logits = functional_call(module.supernet, unrolled, (x, mixing.weights))
    val_loss = torch.nn.functional.cross_entropy(logits, y)
    return torch.autograd.grad(val_loss, alphas)


def use_sgd(module, **kwargs):
    """Replace the tiny module's weight optimizer (lr 0.05, momentum 0.9, wd 3e-4 by default)."""
    settings = dict(lr=0.05, momentum=0.9, weight_decay=3e-4) | kwargs
    module._standalone_optimizer = torch.optim.SGD(module.supernet.parameters(), **settings)


def take_weight_step(module, batch):
    """One real SGD step, so the momentum buffer that the virtual step uses is non-zero."""
    opt = module.weight_optimizer
    loss, _ = module.loss(batch, {k: a.detach() for k, a in module.arch.as_dict().items()})
    opt.zero_grad()
    loss.backward()
    opt.step()


def hypergradient_error(r: float, **sgd) -> float:
    """Relative error of the finite-difference hypergradient with ε = r / ‖u‖ on a tiny model."""
    module = tiny_search_module(SecondOrder(r=r), dtype=torch.float64)
    use_sgd(module, **sgd)
    with torch.no_grad():  # larger α so the architecture matters to the loss
        for a in module.arch.alphas.values():
            a.normal_(0, 0.5)
    train = random_batch(dtype=torch.float64, seed=1)
    val = random_batch(dtype=torch.float64, seed=2)
    take_weight_step(module, random_batch(dtype=torch.float64, seed=3))

    exact = torch.cat([g.reshape(-1) for g in exact_hypergradient(module, train, val)])
    module.strategy.arch_grad(module, train, val)
    approx = torch.cat([a.grad.reshape(-1) for a in module.arch.alphas.values()])
    return float((exact - approx).norm() / exact.norm())


@pytest.mark.parametrize(
    "sgd",
    [{}, {"nesterov": True}, {"momentum": 0.9, "dampening": 0.5}, {"momentum": 0.0}],
    ids=["momentum", "nesterov", "dampening", "plain"],
)
def test_second_order_matches_exact_hypergradient(sgd):
    # The central difference is exact up to O(ε²) where the loss is smooth; ReLU and max-pool
    # kinks make DARTS' default ε = 0.01/‖v‖ coarse on a model this small, so the match is
    # checked at small ε and the error must shrink as ε does.
    errors = [hypergradient_error(r, **sgd) for r in (1e-3, 1e-6)]
    assert errors[1] < 1e-6, errors
    assert errors[1] < errors[0], errors


def test_default_finite_difference_scale_is_darts():
    assert SecondOrder().r == 0.01


def test_second_order_differs_from_first_order():
    """The implicit term is not negligible on this model: the two modes disagree."""
    module = tiny_search_module(SecondOrder(), dtype=torch.float64)
    train, val = (
        random_batch(dtype=torch.float64, seed=1),
        random_batch(dtype=torch.float64, seed=2),
    )
    module.strategy.arch_grad(module, train, val)
    second = [a.grad.clone() for a in module.arch.alphas.values()]
    FirstOrder()(module, train, val)
    first = [a.grad for a in module.arch.alphas.values()]
    assert any(not torch.allclose(s, f, rtol=1e-3, atol=1e-9) for s, f in zip(second, first))


def test_first_order_gradient_is_plain_validation_gradient():
    module = tiny_search_module(FirstOrder(), dtype=torch.float64)
    val = random_batch(dtype=torch.float64, seed=2)
    module.strategy.arch_grad(module, random_batch(dtype=torch.float64, seed=1), val)
    got = [a.grad.clone() for a in module.arch.alphas.values()]
    loss, _ = module.loss(val, module.arch.as_dict())
    want = torch.autograd.grad(loss, list(module.arch.alphas.values()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    # First order leaves the supernet weights' gradients untouched (it asks only for α's).
    assert all(p.grad is None for p in module.supernet.parameters())


def test_second_order_leaves_weights_unchanged():
    module = tiny_search_module(SecondOrder(), dtype=torch.float64)
    before = {n: p.detach().clone() for n, p in module.supernet.named_parameters()}
    module.strategy.arch_grad(
        module, random_batch(dtype=torch.float64, seed=1), random_batch(dtype=torch.float64, seed=2)
    )
    for n, p in module.supernet.named_parameters():
        assert torch.equal(before[n], p.detach()), n


def test_first_order_holds_the_weights_constant():
    """The arch step records no weight gradients (less work and memory, and an α-only variant
    of a compiled graph), yet α's gradient is autograd's, and the weights train afterwards."""
    module = tiny_search_module(FirstOrder(), dtype=torch.float64)
    val = random_batch(dtype=torch.float64, seed=2)
    arch = module.arch.as_dict()
    loss, _ = module.loss(val, arch)
    expected = torch.autograd.grad(loss, list(arch.values()))
    module.strategy.arch_grad(module, random_batch(dtype=torch.float64, seed=1), val)
    for a, g in zip(arch.values(), expected):
        torch.testing.assert_close(a.grad, g)
    assert all(p.requires_grad and p.grad is None for p in module.supernet.parameters())


@pytest.mark.parametrize(
    "sgd",
    [
        {},
        {"nesterov": True},
        {"nesterov": True, "weight_decay": 5e-4},
        {"dampening": 0.3},
        {"momentum": 0.0, "weight_decay": 0.0},
        {"maximize": True, "nesterov": True},
    ],
    ids=["momentum", "nesterov", "nb201_base", "dampening", "plain", "maximize"],
)
@pytest.mark.parametrize("first_step", [True, False], ids=["fresh", "with_buffer"])
def test_virtual_step_is_the_optimizers_real_next_step(sgd, first_step):
    """w' equals what ``optimizer.step()`` then does, state and all, for every SGD setting
    (under Nesterov the old unroll differed by up to 1.1e-2 under nb201_base)."""
    module = tiny_search_module(SecondOrder(), dtype=torch.float64)
    use_sgd(module, **sgd)
    opt = module.weight_optimizer
    if not first_step:
        take_weight_step(module, random_batch(dtype=torch.float64, seed=3))
    params = dict(module.supernet.named_parameters())
    loss, _ = module.loss(random_batch(dtype=torch.float64, seed=1), module.arch.as_dict())
    grads = torch.autograd.grad(loss, list(params.values()))
    virtual, _ = SecondOrder.virtual_step(opt, params, list(grads))
    for p, g in zip(params.values(), grads):
        p.grad = g
    opt.step()
    for name, p in params.items():
        torch.testing.assert_close(virtual[name], p.detach(), rtol=0, atol=1e-15)


def test_virtual_step_follows_each_parameters_group():
    """Two param groups with different lr: each parameter unrolls under its own."""
    module = tiny_search_module(SecondOrder(), dtype=torch.float64)
    params = list(module.supernet.parameters())
    opt = torch.optim.SGD(
        [{"params": params[:3], "lr": 0.5}, {"params": params[3:]}], lr=0.01, momentum=0.9
    )
    module._standalone_optimizer = opt
    named = dict(module.supernet.named_parameters())
    grads = [torch.ones_like(p) for p in named.values()]
    virtual, xi = SecondOrder.virtual_step(opt, named, grads)
    factors = sorted(set(xi.values()))
    assert factors == [0.01, 0.5], factors
    for p, g in zip(named.values(), grads):
        p.grad = g
    opt.step()
    for name, p in named.items():
        torch.testing.assert_close(virtual[name], p.detach(), rtol=0, atol=1e-15)


def test_second_order_refuses_an_optimizer_it_cannot_unroll():
    module = tiny_search_module(SecondOrder(), dtype=torch.float64)
    module._standalone_optimizer = torch.optim.Adam(module.supernet.parameters(), lr=1e-3)
    with pytest.raises(TypeError, match=r"Adam.*torch\.optim\.SGD"):
        module.strategy.arch_grad(
            module, random_batch(dtype=torch.float64, seed=1), random_batch(dtype=torch.float64)
        )


def test_second_order_at_zero_learning_rate_is_first_order():
    """lr 0 (a cosine-to-0 schedule's end): w' = w, the implicit term vanishes, no NaN."""
    module = tiny_search_module(SecondOrder(), dtype=torch.float64)
    use_sgd(module, lr=0.0)
    train, val = (
        random_batch(dtype=torch.float64, seed=1),
        random_batch(dtype=torch.float64, seed=2),
    )
    module.strategy.arch_grad(module, train, val)
    second = [a.grad.clone() for a in module.arch.alphas.values()]
    FirstOrder()(module, train, val)
    for s, f in zip(second, (a.grad for a in module.arch.alphas.values())):
        torch.testing.assert_close(s, f)
