"""The search loop's schedule options (ProxylessNAS' recipe): the warm-up lr cosine that
restarts (``nas/core/lr_schedules.py``), one α step every N weight steps (``strategy.arch_every``)
and label smoothing in the weight step only (``strategy.label_smoothing``)."""

from __future__ import annotations

import math
from functools import partial

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from nas.core.lr_schedules import WarmupThenCosine
from nas.search.module import SearchModule
from nas.strategies import Strategy
from nas.strategies.arch_grad import FirstOrder
from nas.strategies.samplers import SoftmaxSampler
from supernet.spaces.nb201 import NB201Space
from tests.helpers.modules import random_batch
from tests.helpers.runs import run_train


def test_warmup_cosine_then_restart_from_the_optimizer_lr():
    lr, epochs, warmup, peak, lr_min = 0.025, 10, 4, 0.05, 0.001
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, WarmupThenCosine(lr, epochs, warmup, peak, lr_min)
    )
    seen = []
    for _ in range(epochs):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    warm = [0.5 * peak * (1 + math.cos(math.pi * e / warmup)) for e in range(warmup)]
    main = [
        lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * (e - warmup) / (epochs - warmup)))
        for e in range(warmup, epochs)
    ]
    assert seen == pytest.approx(warm + main)
    assert seen[0] == pytest.approx(peak) and seen[warmup] == pytest.approx(lr)  # the restart
    assert all(a > b for a, b in zip(seen[:warmup - 1], seen[1:warmup]))  # fmt: skip
    # The factor is part of the scheduler's state: a resumed run continues the same sequence.
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, WarmupThenCosine(1.0, 99, 1, 1.0, 0.0))
    sched2.load_state_dict(state)
    assert sched2.lr_lambdas[0].__dict__ == sched.lr_lambdas[0].__dict__


@pytest.mark.parametrize(
    "args, match",
    [((0.025, 10, 10, 0.05, 0.0), "lr_warmup_epochs=10"), ((0.025, 10, 3, 0.0, 0.0), "peak=0.0")],
)
def test_impossible_warmup_is_refused(args, match):
    with pytest.raises(ValueError, match=match):
        WarmupThenCosine(*args)


def tiny_module(**kw) -> SearchModule:
    space = NB201Space((3, 8, 8), 5, C=4, layers=1)
    return SearchModule(
        space,
        Strategy("darts", SoftmaxSampler(), FirstOrder()),
        weight_optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        arch_optimizer=partial(torch.optim.Adam, lr=3e-3),
        **kw,
    )


def fit(module: SearchModule, steps: int, epochs: int = 1) -> None:
    batches = [
        {
            "train": random_batch(4, 5, seed=2 * i),
            "val": random_batch(4, 5, seed=2 * i + 1),
        }  # fmt: skip
        for i in range(steps)
    ]
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        accelerator="cpu",
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))


def test_alpha_steps_every_n_weight_steps_and_smoothing_only_in_the_weight_step():
    module = tiny_module(arch_every=3, label_smoothing=0.1)
    arch_calls, smoothing = [], []
    arch_grad = module.strategy.arch_grad
    loss = module.loss

    def counting_arch_grad(mod, train, val):
        arch_calls.append(mod.trainer.global_step)
        return arch_grad(mod, train, val)

    def recording_loss(batch, alphas, *args, label_smoothing=0.0, **kw):
        smoothing.append(label_smoothing)
        return loss(batch, alphas, *args, label_smoothing=label_smoothing, **kw)

    module.strategy.arch_grad = counting_arch_grad
    module.loss = recording_loss
    fit(module, steps=7)
    # Batches 2 and 5 (0-based) of 7: (index + 1) % 3 == 0. The global step counts both
    # optimizers' steps (two per step with an α step, one without).
    assert len(arch_calls) == 2
    # The α steps' losses are plain cross-entropy; the 7 weight steps' are smoothed.
    assert sorted(smoothing) == [0.0] * 2 + [0.1] * 7


def test_label_smoothing_is_the_smoothed_cross_entropy():
    module = tiny_module()
    x, y = random_batch(4, 5, seed=0)
    alphas = {k: a.detach() for k, a in module.arch.as_dict().items()}
    plain, logits = module.loss((x, y), alphas)
    smoothed, _ = module.loss((x, y), alphas, label_smoothing=0.1)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, y).item())
    assert smoothed.item() == pytest.approx(
        F.cross_entropy(logits, y, label_smoothing=0.1).item(), rel=1e-6
    )
    assert smoothed.item() != pytest.approx(plain.item())


def test_arch_every_below_one_is_refused():
    with pytest.raises(ValueError, match="arch_every=0"):
        tiny_module(arch_every=0)


def test_an_impossible_warmup_fails_before_any_work(tmp_path, monkeypatch, capsys):
    args = ["stage=search", "data=synthetic", "strategy.lr_warmup_epochs=5", "trainer.max_epochs=3"]
    assert run_train(monkeypatch, tmp_path, *args, logger="none") != 0
    assert "strategy.lr_warmup_epochs=5 must be between 1" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()
