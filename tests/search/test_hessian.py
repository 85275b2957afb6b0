"""The Hessian diagnostic (RobustDARTS): power iteration against the exact Hessian's spectrum,
DARTS-ES' stopping rule, and a search that logs the eigenvalue."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from nas.search.hessian import EarlyStopRule, dominant_eigenvalue, module_eigenvalue
from nas.search.module import SearchModule
from nas.strategies import Strategy
from nas.strategies.arch_grad import FirstOrder
from nas.strategies.samplers import SoftmaxSampler
from supernet.spaces.nb201 import NB201Space
from tests.helpers.runs import run_train_unlogged


def tiny_module() -> SearchModule:
    torch.manual_seed(0)
    space = NB201Space((3, 8, 8), 5, C=4, layers=1)
    module = SearchModule(
        space,
        Strategy("t", SoftmaxSampler(), FirstOrder()),
        weight_optimizer=partial(torch.optim.SGD, lr=0.05),
        arch_optimizer=partial(torch.optim.Adam, lr=3e-4),
        alpha_init_std=1.0,  # away from the uniform point: a less degenerate spectrum
    )
    return module.double()


def test_power_iteration_matches_the_exact_hessian_spectrum():
    module = tiny_module()
    gen = torch.Generator().manual_seed(1)
    batch = (torch.randn(8, 3, 8, 8, generator=gen).double(), torch.arange(8) % 5)
    (cell,) = module.arch.cell_types
    alpha = module.arch.alphas[cell]

    def loss_of(a: torch.Tensor) -> torch.Tensor:
        return module.loss(batch, {cell: a.view_as(alpha)})[0]

    module.supernet.train()
    flat = alpha.detach().flatten().clone()
    H = torch.autograd.functional.hessian(loss_of, flat)
    eigs = torch.linalg.eigvalsh((H + H.T) / 2)
    exact = float(eigs[eigs.abs().argmax()])
    estimate = module_eigenvalue(module, [batch], iters=1000, tol=1e-10)
    assert estimate == pytest.approx(exact, rel=1e-3)


def test_power_iteration_on_a_quadratic():
    A = torch.diag(torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64))
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    value = dominant_eigenvalue(lambda: 0.5 * x @ A @ x, [x], iters=200, tol=1e-12)
    assert value == pytest.approx(3.0, rel=1e-6)


def test_early_stop_rule_on_a_synthetic_sequence():
    # Flat eigenvalues until epoch 19, then a steep rise: the local average (window 5, centred
    # 2 epochs back) doubles within delta = 4 averages, so the rule stops and points 4 epochs
    # before the average that rose.
    values = [1.0] * 20 + [1.0 + 0.5 * i for i in range(1, 20)]
    rule = EarlyStopRule(window=5, delta=4, factor=1.3, start_epoch=10, every=1)
    stop = None
    for epoch, v in enumerate(values):
        stop = rule.update(epoch, v)
        if stop is not None:
            break
    # averages: la(e) = mean(values[e-2 .. e+2]); first la / la(e - 4) > 1.3 at epoch 22
    la = [
        sum(values[max(0, e - 4) : e + 1]) / len(values[max(0, e - 4) : e + 1]) for e in range(40)
    ]
    expected_epoch = next(e for e in range(2, 40) if e - 2 - 4 >= 10 and la[e] / la[e - 4] > 1.3)
    assert epoch == expected_epoch and stop == epoch - 2 - 4
    # A flat sequence never stops, nor does one before es_start_epoch.
    flat = EarlyStopRule(every=1)
    assert all(flat.update(e, 2.0) is None for e in range(50))
    early = EarlyStopRule(start_epoch=100, every=1)
    assert all(early.update(e, float(e + 1) ** 3) is None for e in range(50))


def test_search_logs_the_eigenvalue(tmp_path, monkeypatch):
    args = ["stage=search", "data=synthetic", "data.num_samples=64", "search_space=nb201"]
    args += ["trainer.max_epochs=2", "diagnostics.hessian_every=1", "diagnostics.hessian_iters=5"]
    assert run_train_unlogged(monkeypatch, tmp_path, *args) == 0
    lines = [json.loads(s) for s in (tmp_path / "search_history.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all("hessian/eigenvalue" in h for h in lines)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["hessian_eigenvalue"] == pytest.approx(lines[-1]["hessian/eigenvalue"])


def test_early_stop_rolls_alpha_back_and_stops(monkeypatch):
    from types import SimpleNamespace

    import nas.search.hessian as hessian

    module = tiny_module()
    values = iter([1.0, 1.0, 1.0, 1.0, 1.0, 5.0, 9.0, 9.0, 9.0, 9.0])
    monkeypatch.setattr(hessian, "module_eigenvalue", lambda *a, **k: next(values))
    rule = EarlyStopRule(window=3, delta=1, factor=1.3, start_epoch=0, every=1)
    callback = hessian.HessianDiagnostic(every=1, early_stop=rule)
    callback._batches = []
    trainer = SimpleNamespace(current_epoch=0, max_epochs=10, should_stop=False)
    seen = {}
    for epoch in range(10):
        trainer.current_epoch = epoch
        module.arch.load_values({"cell": torch.full((6, 5), float(epoch))})
        seen[epoch] = module.arch.alphas["cell"].detach().clone()
        callback.on_train_epoch_end(trainer, module)
        if trainer.should_stop:
            break
    stop = callback.stopped
    assert stop is not None and stop["alpha_restored"]
    # window 3: la(e) stands for e - 1; at epoch 5 la = (1+1+5)/3 vs 1 -> ratio > 1.3
    assert stop["epoch"] == 5 and stop["rollback_epoch"] == 5 - 1 - 1
    torch.testing.assert_close(module.arch.alphas["cell"].detach(), seen[3])
    assert callback.summary_fields()["hessian_early_stop"]["rollback_epoch"] == 3


def test_distributed_helpers_are_no_ops_in_one_process(monkeypatch):
    from nas.core import distributed

    # Any collective would fail the test: none may run without a process group.
    def no_collective(*args, **kwargs):
        raise AssertionError("a collective ran in one process")

    for name in ("all_reduce", "broadcast", "get_world_size", "get_rank"):
        monkeypatch.setattr(torch.distributed, name, no_collective)
    assert not torch.distributed.is_initialized()
    assert (distributed.world_size(), distributed.rank()) == (1, 0)
    assert not distributed.is_distributed()
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([[3.0]], dtype=torch.float64)
    assert distributed.all_reduce_sum_([a, b]) == [a, b]
    distributed.all_reduce_mean_([a, b])
    distributed.broadcast_([a, b])
    assert a.tolist() == [1.0, 2.0] and b.tolist() == [[3.0]]
    assert distributed.sum_floats([3, 0.5]) == [3.0, 0.5]
    assert distributed.broadcast_float(1.25) == 1.25
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    p.grad = torch.tensor([0.5, -1.0])
    distributed.average_gradients([p, q])
    assert p.grad.tolist() == [0.5, -1.0] and q.grad is None
    x, y = torch.randn(5, 3), torch.arange(5)
    sx, sy = distributed.rank_shard((x, y))
    assert sx is x and sy is y
    # The power iteration's reduction is then the identity: the same value with or without.
    A = torch.diag(torch.tensor([2.0, -0.5], dtype=torch.float64))
    v = torch.ones(2, dtype=torch.float64, requires_grad=True)
    f = lambda: 0.5 * v @ A @ v  # noqa: E731
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert dominant_eigenvalue(f, [v], 50, 1e-12, gen()) == dominant_eigenvalue(
        f, [v], 50, 1e-12, gen(), reduce=None
    )
