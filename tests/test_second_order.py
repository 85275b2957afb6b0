"""Second-order DARTS: the finite-difference hypergradient against autograd's exact one."""

from __future__ import annotations

import torch
from torch.func import functional_call

from nas.strategies.arch_grad import FirstOrder, SecondOrder
from tests.conftest import random_batch, tiny_search_module


def exact_hypergradient(module, train, val):
    """d/dα L_val(w - ξ(μ·buf + ∇w L_train(w, α) + λw), α), differentiated through ∇w."""
    opt = module.weight_optimizer
    group = opt.param_groups[0]
    xi, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
    params = dict(module.supernet.named_parameters())
    alphas = list(module.arch.alphas.values())
    train_loss, _ = module.loss(train, module.arch.as_dict())
    grads = torch.autograd.grad(train_loss, list(params.values()), create_graph=True)
    unrolled = {}
    for (name, w), g in zip(params.items(), grads):
        buf = opt.state.get(w, {}).get("momentum_buffer")
        step = g + wd * w + (mu * buf if buf is not None else 0.0)
        unrolled[name] = w - xi * step
    x, y = val
    mixing = module.strategy.sampler(module.arch.as_dict())
    logits = functional_call(module.supernet, unrolled, (x, mixing.weights))
    val_loss = torch.nn.functional.cross_entropy(logits, y)
    return torch.autograd.grad(val_loss, alphas)


def take_weight_step(module, batch):
    """One real SGD step, so the momentum buffer that the virtual step uses is non-zero."""
    opt = module.weight_optimizer
    loss, _ = module.loss(batch, {k: a.detach() for k, a in module.arch.as_dict().items()})
    opt.zero_grad()
    loss.backward()
    opt.step()


def hypergradient_error(r: float) -> float:
    """Relative error of the finite-difference hypergradient with ε = r / ‖v‖ on a tiny model."""
    module = tiny_search_module(SecondOrder(r=r), dtype=torch.float64)
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


def test_second_order_matches_exact_hypergradient():
    # The central difference is exact up to O(ε²) where the loss is smooth; ReLU and max-pool
    # kinks make DARTS' default ε = 0.01/‖v‖ coarse on a model this small, so the match is
    # checked at small ε and the error must shrink as ε does.
    errors = [hypergradient_error(r) for r in (1e-3, 1e-5)]
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
