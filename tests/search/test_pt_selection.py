"""DARTS-PT selection (``selection=pt``): on a supernet whose accuracy is a known function of
the mixing weights, PT keeps what the accuracy needs, not what α favours; a tiny search in both
spaces writes one architecture to α, genotype.json and ``stage=discretize`` alike."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch

from nas.search.hessian import EarlyStopRule
from nas.search.module import SearchModule
from nas.search.pt_selection import PerturbationSelection, Projection
from nas.strategies import Strategy
from nas.strategies.arch_grad import FirstOrder
from nas.strategies.samplers import SoftmaxSampler
from supernet.spaces.darts import DartsSpace
from supernet.spaces.nb201 import NB201Space
from tests.helpers.config import ddp_config
from tests.helpers.modules import random_batch
from tests.helpers.runs import assert_discretize_agrees, run_train_unlogged


def make_module(space) -> SearchModule:
    return SearchModule(
        space,
        Strategy("t", SoftmaxSampler(), FirstOrder()),
        weight_optimizer=partial(torch.optim.SGD, lr=0.05),
        arch_optimizer=partial(torch.optim.Adam, lr=3e-4),
    )


def known_accuracy(needed: dict[str, list[int]], importance: dict[str, list[float]]):
    """accuracy(weights) = Σ_edges importance[e] · weights[e, needed[e]] (normalised)."""

    def measure(module, weights, batches):
        total = sum(sum(v) for v in importance.values())
        acc = sum(
            importance[c][e] * float(weights[c][e, needed[c][e]])
            for c in needed
            for e in range(len(needed[c]))
        )
        return acc / total, 0.0

    return measure


def test_pt_keeps_the_op_whose_removal_hurts_most_nb201(monkeypatch):
    space = NB201Space((3, 8, 8), 5, C=4, layers=1)
    module = make_module(space)
    needed = {"cell": [1, 2, 3, 4, 0, 2]}
    # α favours another op on every edge: the magnitude rule would pick it.
    alphas = torch.zeros(6, 5)
    for e, o in enumerate(needed["cell"]):
        alphas[e, (o + 1) % 5] = 3.0
    module.arch.load_values({"cell": alphas})
    selector = PerturbationSelection(tune_epochs=0, seed=3)
    monkeypatch.setattr(selector, "measure", known_accuracy(needed, {"cell": [1.0] * 6}))
    report = selector(module, val_batches=[])
    genotype = module.genotype()
    assert [edge for node in genotype.nodes for edge in node] == [
        (space.ops[o], i) for o, (i, _) in zip(needed["cell"], space.edges)
    ]
    assert report["genotype"] == str(genotype) and len(report["ops"]) == 6
    entry = report["ops"][0]
    assert max(entry["drop"], key=entry["drop"].get) == entry["op"]
    # α now holds one-hot rows of the choice.
    torch.testing.assert_close(
        module.arch.alphas["cell"].detach(),
        torch.nn.functional.one_hot(torch.tensor(needed["cell"]), 5).float(),
    )


def test_pt_topology_keeps_the_two_edges_whose_removal_hurts_most_darts(monkeypatch):
    space = DartsSpace((3, 8, 8), 5, C=4, layers=3)
    module = make_module(space)
    n = len(space.edges)
    gen = torch.Generator().manual_seed(0)
    ops = [o for o, name in enumerate(space.ops) if name != "none"]
    needed = {
        c: [ops[int(i)] for i in torch.randint(len(ops), (n,), generator=gen)]
        for c in space.cell_types
    }
    importance = {c: torch.rand(n, generator=gen).add(0.1).tolist() for c in space.cell_types}
    selector = PerturbationSelection(tune_epochs=0, seed=1)
    monkeypatch.setattr(selector, "measure", known_accuracy(needed, importance))
    tuned = []
    report = selector(module, val_batches=[], tune=lambda: tuned.append(1))
    assert len(tuned) == 0  # tune_epochs=0: no tuning
    genotype = module.genotype()
    for cell in space.cell_types:
        expected = []
        for node in sorted({j for _, j in space.edges}):
            eids = [e for e, (_, j) in enumerate(space.edges) if j == node]
            kept = sorted(eids, key=lambda e: -importance[cell][e])[:2]
            expected.append({(space.ops[needed[cell][e]], space.edges[e][0]) for e in kept})
        pairs = getattr(genotype, cell)
        got = [set(pairs[2 * k : 2 * k + 2]) for k in range(len(pairs) // 2)]
        assert got == expected, cell
    assert len(report["topology"]) == 2 * 3  # nodes 3, 4, 5 of both cell types


def test_projection_fixes_decided_rows_and_keeps_gradients():
    w = torch.full((3, 4), 0.25, requires_grad=True)
    proj = Projection({"c": {0: 2}}, {"c": {1}})
    out = proj.apply({"c": w})["c"]
    torch.testing.assert_close(out[0], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(out[1], torch.zeros(4))
    out[2].sum().backward()
    assert w.grad[2].abs().sum() > 0 and w.grad[:2].abs().sum() == 0


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_selection_pt_runs_after_a_tiny_search(space, tmp_path, monkeypatch):
    common = ["data=synthetic", "data.num_samples=64", f"search_space={space}"]
    if space == "darts":
        common += ["search_space.steps=2", "search_space.multiplier=2"]  # fewer decisions
    pt = ["selection=pt", "selection.tune_epochs=1", "selection.tune_batches=1"]
    pt += ["selection.eval_batches=1"]
    assert run_train_unlogged(monkeypatch, tmp_path / "s", "stage=search", *common, *pt) == 0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    report = summary["selection"]
    assert report["selector"] == "pt" and report["genotype"] == summary["genotype"]
    assert all(set(e) >= {"cell", "edge", "op", "drop"} for e in report["ops"])
    if space == "darts":
        assert report["topology"] and all(len(t["kept"]) == 2 for t in report["topology"])
    else:
        assert not report["topology"] and len(report["ops"]) == 6
    assert_discretize_agrees(tmp_path, monkeypatch, common)


class PositiveRule(EarlyStopRule):
    """DARTS-ES' rule on ``|λ| + 1``, whichever sign λ has: with ``factor`` < 1 it stops as
    soon as it can (the test's forced stop)."""

    def update(self, epoch: int, value: float) -> int | None:
        return super().update(epoch, abs(value) + 1.0)


class PTRankDump(L.Callback):
    """Test-only hook, on every DDP rank: records the Hessian diagnostic's eigenvalues, then,
    after the fit (the supernet unwrapped from DDP, the process group up, as in
    ``stages.search`` under ``trainer=ddp``), runs DARTS-PT and writes what this rank got."""

    def __init__(self, cfg, out_dir: str):
        self.cfg, self.out_dir = cfg, out_dir
        self.eigenvalues: list[float] = []

    def _hessian(self, trainer):
        from nas.search.hessian import HessianDiagnostic

        return next(c for c in trainer.callbacks if isinstance(c, HessianDiagnostic))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.eigenvalues.append(self._hessian(trainer).latest["hessian/eigenvalue"])

    def on_fit_end(self, trainer, pl_module) -> None:
        from nas.core import distributed
        from nas.run.pt_stage import select as pt_select
        from nas.search.hessian import module_eigenvalue

        # One product from the same unit vector v: vᵀ(mean over ranks of H)v, and this rank's
        # own vᵀHv (no reduction). The former must be the mean of the latter.
        batches = self._hessian(trainer)._batches
        rayleigh = module_eigenvalue(pl_module, batches, iters=1, seed=7)
        local = module_eigenvalue(pl_module, batches, iters=1, seed=7, reduce=None)
        report = pt_select(self.cfg, pl_module, trainer.datamodule)
        state = {
            "world_size": distributed.world_size(),
            "hessian_labels": batches[0][1].tolist(),
            "rayleigh": rayleigh,
            "local_rayleigh": local,
            "eigenvalues": self.eigenvalues,
            "stopped": self._hessian(trainer).stopped,
            "epochs": trainer.current_epoch,
            "report": report,
            "genotype": str(pl_module.genotype()),
            "alphas": {k: v.detach().tolist() for k, v in pl_module.arch.as_dict().items()},
            "weights": [float(p.detach().double().sum()) for p in pl_module.supernet.parameters()],
            "buffers": [float(b.detach().double().sum()) for b in pl_module.supernet.buffers()],
        }
        Path(self.out_dir, f"pt{trainer.global_rank}.json").write_text(json.dumps(state))


@pytest.mark.slow  # 14 s on 2 cores: two spawned gloo ranks, a search, DARTS-PT, DARTS-ES
@pytest.mark.xdist_group("ddp")  # with tests/run/test_ddp.py: one spawning test at a time
@pytest.mark.usefixtures("spawned_ranks")
def test_ddp_spawn_hessian_and_pt_agree_on_every_rank(tmp_path):
    """2 CPU ranks (gloo): the eigenvalue is computed on different images per rank but is the
    same everywhere, and so is DARTS-ES' stop (forced after the second eigenvalue); DARTS-PT,
    with its tuning steps, decides the same and keeps the supernet identical on both ranks."""
    from nas.run import builders

    cfg = ddp_config(
        "data=synthetic", "trainer.max_epochs=3", "trainer.limit_train_batches=2",
        "search_space.steps=2", "search_space.multiplier=2", "diagnostics.hessian_every=1",
        "diagnostics.hessian_iters=5", "diagnostics.early_stop=true", "selection=pt",
        "selection.tune_epochs=1", "selection.tune_batches=1", "selection.eval_batches=1",
    )  # fmt: skip
    module = builders.search_module(cfg, builders.space_from_config(cfg))
    report = builders.search_report(cfg, tmp_path)
    (hessian,) = report.extras
    hessian.rule = PositiveRule(window=1, delta=1, factor=0.5, start_epoch=0, every=1)
    callbacks = [*report.extras, report, PTRankDump(cfg, str(tmp_path))]
    trainer = builders.trainer(cfg, tmp_path, "search", logger=False, callbacks=callbacks)
    trainer.fit(module, datamodule=builders.search_data(cfg))

    r0, r1 = (json.loads((tmp_path / f"pt{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    # Each rank's power iteration saw its own half of the validation batch ...
    assert len(r0["hessian_labels"]) == len(r1["hessian_labels"]) == 8
    assert r0["hessian_labels"] != r1["hessian_labels"]
    # ... and, with the products averaged over ranks, both got the same eigenvalues (bitwise).
    assert len(r0["eigenvalues"]) == 2 and all(math.isfinite(v) for v in r0["eigenvalues"])
    assert r0["eigenvalues"] == r1["eigenvalues"]
    history = [json.loads(s) for s in (tmp_path / "search_history.jsonl").read_text().splitlines()]
    assert [h["hessian/eigenvalue"] for h in history] == pytest.approx(r0["eigenvalues"])
    # DARTS-ES, forced: both ranks stop after epoch 1 of 3, together, α rolled back alike.
    assert r0["stopped"] == r1["stopped"] and r0["stopped"]["rollback_epoch"] == 0
    assert r0["epochs"] == r1["epochs"] == 2
    # The reduction is the mean of the ranks' Hessians (vᵀHv is linear in H).
    assert r0["local_rayleigh"] != r1["local_rayleigh"]
    assert r0["rayleigh"] == r1["rayleigh"]  # bitwise, without any broadcast
    mean = (r0["local_rayleigh"] + r1["local_rayleigh"]) / 2
    assert r0["rayleigh"] == pytest.approx(mean, rel=1e-4, abs=1e-9)
    # DARTS-PT: the same decisions and criteria (reduced accuracies), the same one-hot α, and
    # the same supernet after tuning between decisions (averaged gradients, broadcast BN).
    assert r0["report"] == r1["report"] and r0["report"]["topology"]
    assert r0["genotype"] == r1["genotype"] == r0["report"]["genotype"]
    assert r0["alphas"] == r1["alphas"]
    assert r0["weights"] == r1["weights"] and r0["buffers"] == r1["buffers"]
    # The main process got rank 0's α back: the architecture DARTS-PT wrote.
    assert str(module.genotype()) == r0["genotype"]


def test_tuning_steps_are_the_searchs_steps(monkeypatch):
    """Each tuning step ends its α step with the strategy's ``after_arch_step`` (ProxylessNAS'
    rescale) and smooths the weight step's labels as the search does."""
    from nas.search.pt_selection import Tuner

    module = make_module(NB201Space((3, 8, 8), 5, C=4, layers=1))
    module.label_smoothing = 0.1
    calls, smoothing = [], []
    monkeypatch.setattr(module.strategy, "after_arch_step", lambda arch: calls.append(arch))
    loss = module.loss

    def recording_loss(batch, alphas, *args, label_smoothing=0.0, **kw):
        smoothing.append(label_smoothing)
        return loss(batch, alphas, *args, label_smoothing=label_smoothing, **kw)

    monkeypatch.setattr(module, "loss", recording_loss)
    tuner = Tuner(module, data=None, epochs=1, total_epochs=1, lr_factor=0.1)
    tuner.step({"train": random_batch(4, 5, seed=0), "val": random_batch(4, 5, seed=1)})
    assert len(calls) == 1 and set(calls[0]) == set(module.arch.as_dict())
    assert smoothing == [0.0, 0.1]  # the α step's loss plain, the weight step's smoothed
