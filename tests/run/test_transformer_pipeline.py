"""The transformer spaces as a user runs them: ``search_space=vit`` on images and
``search_space=gpt data=text`` through search, discretize, retrain (from scratch and with the
supernet's weights) and export to TorchScript and ONNX, with their typed genotypes."""

from __future__ import annotations

import json

import pytest
import torch

from nas.core.genotype import load_genotype
from supernet.spaces.gpt import GPTGenotype
from supernet.spaces.vit import ViTGenotype
from tests.helpers.runs import read_summary, run_train_unlogged

GPT_SMALL = ["data=text", "search_space.n_embd=[8,16]", "search_space.n_layer=[1,2]",
             "search_space.n_head=[1,2]", "search_space.intermediate_size=[16,32]",
             "search_space.head_size=4", "data.input_shape=[16]"]  # fmt: skip


@pytest.mark.parametrize(
    "space, overrides, genotype_type, fields",
    [
        ("vit", ["data=synthetic"], ViTGenotype,
         {"embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_dim"}),
        ("gpt", GPT_SMALL, GPTGenotype,
         {"n_embd", "n_layer", "n_head", "n_query_groups", "intermediate_size", "pos_encoding"}),
    ],
)  # fmt: skip
def test_the_pipeline_exports_both_formats(space, overrides, genotype_type, fields, tmp_path,
                                           monkeypatch):  # fmt: skip
    code = run_train_unlogged(
        monkeypatch, tmp_path, f"search_space={space}", *overrides, "export.onnx=true"
    )
    assert code == 0
    genotype = load_genotype(tmp_path / "genotype.json")
    assert isinstance(genotype, genotype_type)
    assert fields <= set(json.loads((tmp_path / "genotype.json").read_text()))
    summary = read_summary(tmp_path)
    assert summary["genotype"] == str(genotype) and summary["params"] > 0
    assert summary["export"]["onnx"]["max_abs_diff"] <= 1e-4
    assert summary["export"]["torchscript"]["max_abs_diff"] <= 1e-5
    if space == "gpt":
        assert summary["test_bits_per_byte"] > 0 and summary["test_perplexity"] > 1


def test_inherit_and_evaluate_a_found_vit(tmp_path, monkeypatch):
    """AutoFormer's way: the found child evaluated with the supernet's weights, no training."""
    code = run_train_unlogged(
        monkeypatch, tmp_path, "search_space=vit", "data=synthetic", "strategy=spos",
        "strategy.selector.population=4", "strategy.selector.iterations=1",
        "strategy.selector.parents=2", "strategy.selector.mutations=2",
        "strategy.selector.crossovers=2", "retrain.inherit=true", "retrain.epochs=0",
    )  # fmt: skip
    assert code == 0
    summary = read_summary(tmp_path)
    assert summary["retrain_inherited"] is True and summary["test_acc"] is not None
    assert summary["selection"]["best_val_acc"] is not None
    assert torch.jit.load(str(tmp_path / "model.pt")) is not None
