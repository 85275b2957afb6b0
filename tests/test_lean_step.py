"""Speed options change speed, not results: bf16 autocast, channels_last, torch.compile."""

from __future__ import annotations

import json

import pytest
import torch

from nas.strategies.arch_grad import FirstOrder
from tests.conftest import random_batch, tiny_search_module
from tests.test_train import run_train

SEARCH = ["stage=search", "seed=3", "trainer.limit_train_batches=2"]


def read_alphas(run_dir) -> dict[str, torch.Tensor]:
    data = json.loads((run_dir / "alphas.json").read_text())["alphas"]
    return {k: torch.tensor(v) for k, v in data.items()}


@pytest.mark.parametrize("strategy", ["darts", "darts_2nd"])
def test_bf16_autocast_pipeline_runs_and_stays_close(strategy, tmp_path, monkeypatch):
    assert run_train(monkeypatch, tmp_path / "fp32", *SEARCH, f"strategy={strategy}") == 0
    args = (*SEARCH, f"strategy={strategy}", "trainer.precision=bf16-mixed")
    assert run_train(monkeypatch, tmp_path / "bf16", *args) == 0
    a, b = read_alphas(tmp_path / "fp32"), read_alphas(tmp_path / "bf16")
    # Adam moves each α by at most ~lr = 3e-4 per step whatever the gradient's size, so where
    # bf16 rounding flips a tiny gradient's sign two runs can differ by 2 x lr per step.
    bound = 2 * 2 * 3e-4 * 1.05
    for k in a:
        assert torch.isfinite(b[k]).all()
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=bound)
    assert run_train(monkeypatch, tmp_path / "rt", "stage=retrain", "genotype=darts_v2",
                     "trainer.precision=bf16-mixed") == 0  # fmt: skip


def test_channels_last_gives_the_same_search(tmp_path, monkeypatch):
    assert run_train(monkeypatch, tmp_path / "nchw", *SEARCH) == 0
    assert run_train(monkeypatch, tmp_path / "nhwc", *SEARCH, "channels_last=true") == 0
    a, b = read_alphas(tmp_path / "nchw"), read_alphas(tmp_path / "nhwc")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-8)
    assert (tmp_path / "nchw/genotype.json").read_text() == (
        tmp_path / "nhwc/genotype.json"
    ).read_text()


@pytest.mark.slow
def test_compiled_supernet_matches_eager_and_never_recompiles():
    """Cold compile of even a tiny supernet takes minutes on 2 CPU cores: marked slow."""
    from torch._dynamo.utils import counters

    eager = tiny_search_module(FirstOrder(), seed=4)
    compiled = tiny_search_module(FirstOrder(), seed=4)
    compiled.supernet.compile(dynamic=False)
    counters.clear()
    graphs = []
    for step in range(4):
        x, y = random_batch(seed=step)
        weights = {k: torch.softmax(a.detach(), -1) for k, a in eager.arch.as_dict().items()}
        out_e = eager.supernet(x, weights)
        out_c = compiled.supernet(x, weights)
        torch.testing.assert_close(out_c, out_e, rtol=1e-4, atol=1e-5)
        out_c.square().mean().backward()
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] >= 1
    assert graphs[1:] == [graphs[0]] * 3, f"recompiled after warm-up: {graphs}"
