"""The recipe "add a sampler": one file (this one) and one strategy config, no edit under
``nas/``. The toy sampler is defined here through the public contract
(``nas.strategies.protocols.Sampler``) and registry (``register_sampler``); its strategy is a
config node stored from here in Hydra's ConfigStore (group ``strategy``), the place a
``conf/strategy/<method>.yaml`` would take. ``train.py`` then runs the whole pipeline with it.
"""

from __future__ import annotations

import json

import torch
from hydra.core.config_store import ConfigStore

from nas.core.genotype import kept_edges, load_genotype
from nas.strategies.protocols import Mixing, Sampler
from nas.strategies.samplers import register_sampler
from tests.helpers.runs import run_train_unlogged


class FavouriteOp(Sampler):
    """Mixes with softmax(α) like DARTS, but reports (and so discretizes) a distribution that
    puts ``weight`` on one op of every edge: a genotype of that op alone proves it was used."""

    calls = 0  # mixings computed, across instances

    def __init__(self, op: str = "max_pool_3x3", weight: float = 0.9):
        self.op, self.weight = op, weight
        self.index: int | None = None

    def setup(self, seed: int = 0, space=None, **_) -> None:
        super().setup(seed)
        if space is not None:
            self.index = list(space.ops).index(self.op)

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        FavouriteOp.calls += 1
        return Mixing({cell: torch.softmax(a, dim=-1) for cell, a in alphas.items()})

    def probabilities(self, alphas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for cell, a in alphas.items():
            p = torch.full(a.shape, (1 - self.weight) / (a.shape[-1] - 1))
            p[:, self.index] = self.weight
            out[cell] = p
        return out


register_sampler("favourite_op", FavouriteOp)

# What conf/strategy/favourite_op.yaml would hold.
ConfigStore.instance().store(
    group="strategy",
    name="favourite_op",
    node={
        "name": "favourite_op",
        "sampler": {"name": "favourite_op", "op": "max_pool_3x3"},
        "arch_grad": {"_target_": "nas.strategies.arch_grad.FirstOrder"},
        "weight_optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.025},
        "arch_optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 3e-4},
    },
)


def test_a_sampler_from_one_file_runs_the_pipeline(tmp_path, monkeypatch):
    FavouriteOp.calls = 0
    run_dir = tmp_path / "run"
    assert run_train_unlogged(monkeypatch, run_dir, "strategy=favourite_op") == 0
    assert FavouriteOp.calls > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["strategy"] == "favourite_op"
    genotype = load_genotype(run_dir / "genotype.json")
    ops = {op for edges in kept_edges(genotype).values() for op, _, _ in edges}
    assert ops == {"max_pool_3x3"}
