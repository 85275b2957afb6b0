"""Lightning DDP on CPU (gloo, 2 spawned processes): ranks see different data, hold the same α."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from nas.run import builders
from tests.helpers.config import ddp_config


class RankDump(L.Callback):
    """Writes, per rank, the first training labels it saw and its final α and weight checksums."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.first_labels: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.first_labels:
            self.first_labels = batch["train"][1].tolist()

    def on_train_end(self, trainer, pl_module) -> None:
        state = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "first_labels": self.first_labels,
            "alphas": {
                k: v.detach().double().tolist() for k, v in pl_module.arch.as_dict().items()
            },
            "weights": [float(p.detach().double().sum()) for p in pl_module.supernet.parameters()],
        }
        Path(self.out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(state))


# Each test spawns 2 ranks: one such test at a time (the xdist group), each with its own port.
pytestmark = [pytest.mark.usefixtures("spawned_ranks"), pytest.mark.xdist_group("ddp")]


def test_ddp_spawn_two_cpu_ranks_keep_alpha_and_weights_identical(tmp_path):
    cfg = ddp_config("trainer.max_epochs=1")
    space = builders.space_from_config(cfg)
    module = builders.search_module(cfg, space)
    alpha_before = {k: v.detach().clone() for k, v in module.arch.as_dict().items()}
    trainer = builders.trainer(
        cfg, tmp_path, "search", logger=False, callbacks=[RankDump(str(tmp_path))]
    )
    trainer.fit(module, datamodule=builders.search_data(cfg))

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # Each rank takes half of the global batch of 16: different images, 8 each.
    assert len(ranks[0]["first_labels"]) == len(ranks[1]["first_labels"]) == 8
    assert ranks[0]["first_labels"] != ranks[1]["first_labels"]
    assert ranks[0]["alphas"] == ranks[1]["alphas"]  # bitwise: α grads are all-reduced
    torch.testing.assert_close(ranks[0]["weights"], ranks[1]["weights"], rtol=0, atol=0)
    moved = any(
        not torch.equal(alpha_before[k].double(), torch.tensor(ranks[0]["alphas"][k]))
        for k in alpha_before
    )
    assert moved, "α did not move"
    # Only rank 0 wrote the checkpoint; the main process got rank 0's α back.
    assert (tmp_path / "checkpoints/search/last.ckpt").is_file()
    assert torch.equal(
        module.arch.as_dict()["normal"].double(), torch.tensor(ranks[0]["alphas"]["normal"])
    )


class RetrainRankDump(L.Callback):
    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_end(self, trainer, pl_module) -> None:
        sums = [float(p.detach().double().sum()) for p in pl_module.model.parameters()]
        Path(self.out_dir, f"retrain{trainer.global_rank}.json").write_text(json.dumps(sums))


@pytest.mark.slow  # the search test above spawns the same two gloo ranks by default
def test_ddp_spawn_retrain_keeps_weights_identical(tmp_path):
    from nas.core.genotype import resolve_genotype

    cfg = ddp_config()
    space = builders.space_from_config(cfg)
    module = builders.retrain_module(
        cfg, builders.child_network(cfg, space, resolve_genotype("darts_v2"))
    )
    trainer = builders.trainer(
        cfg,
        tmp_path,
        "retrain",
        logger=False,
        max_epochs=1,
        callbacks=[RetrainRankDump(str(tmp_path))],
    )
    trainer.fit(module, datamodule=builders.retrain_data(cfg))
    sums = [json.loads((tmp_path / f"retrain{r}.json").read_text()) for r in (0, 1)]
    assert sums[0] == sums[1]


# The strategies of issues 17 and 18 that run as one fit, under 2 CPU ranks: α (all-reduced
# gradients) and weights (DDP) stay bitwise identical, whatever each adds to a step (PGD on its
# own batch shard, per-rank latency tables, auxiliary skips, sigmoid weights). -m slow: ~11 s each.
NEW_STRATEGIES = [
    "fairdarts",
    "beta_darts",
    "darts_minus",
    "sdarts_rs",
    "sdarts_adv",
    "proxyless",
    "fbnet",
]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", NEW_STRATEGIES)
def test_ddp_spawn_new_strategies_keep_ranks_identical(strategy, tmp_path):
    cfg = ddp_config("trainer.max_epochs=1", f"strategy={strategy}", "strategy.arch_start_epoch=0")
    module = builders.search_module(cfg, builders.space_from_config(cfg))
    if module.strategy.sampler.samples_paths:  # as conf/trainer/ddp.yaml: unsampled ops unused
        cfg.trainer.strategy = "ddp_spawn_find_unused_parameters_true"
    trainer = builders.trainer(
        cfg, tmp_path, "search", logger=False, callbacks=[RankDump(str(tmp_path))]
    )
    trainer.fit(module, datamodule=builders.search_data(cfg))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["first_labels"] != ranks[1]["first_labels"]
    assert ranks[0]["alphas"] == ranks[1]["alphas"]
    torch.testing.assert_close(ranks[0]["weights"], ranks[1]["weights"], rtol=0, atol=0)
