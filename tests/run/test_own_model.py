"""Searching your own model (``search_space=module``) as a user runs it: the example models of
``examples/own_model.py`` through search, discretize, retrain and export with the methods the
README names, weights inherited from the supernet, and the refusals a user meets."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from nas.core.genotype import load_genotype
from supernet.choices import has_choices
from supernet.spaces import build_space
from supernet.spaces.module_genotype import ModuleGenotype
from tests.helpers.runs import read_summary, run_train_unlogged

CNN = "examples.own_model.SmallCNN"
TRANSFORMER = "examples.own_model.TinyTransformer"
SMALL_SPOS = [
    "strategy.selector.population=4",
    "strategy.selector.iterations=1",
    "strategy.selector.parents=2",
    "strategy.selector.mutations=2",
    "strategy.selector.crossovers=2",
]


@pytest.mark.parametrize(
    "model, strategy",
    [
        (CNN, "darts"),
        (CNN, "gdas"),
        (CNN, "spos"),
        (CNN, "proxyless"),
        (TRANSFORMER, "darts"),
        pytest.param(TRANSFORMER, "gdas", marks=pytest.mark.slow),
        pytest.param(TRANSFORMER, "spos", marks=pytest.mark.slow),
        pytest.param(TRANSFORMER, "proxyless", marks=pytest.mark.slow),
    ],
)
def test_the_example_runs_the_pipeline(model, strategy, tmp_path, monkeypatch):
    extra = SMALL_SPOS if strategy == "spos" else []
    if model == TRANSFORMER and strategy == "darts":
        extra = ["export.onnx=true"]  # the transformer's fixed model through ONNX too
    code = run_train_unlogged(
        monkeypatch, tmp_path, "search_space=module", f"search_space.model={model}",
        f"strategy={strategy}", *extra,
    )  # fmt: skip
    assert code == 0
    genotype = load_genotype(tmp_path / "genotype.json")
    assert isinstance(genotype, ModuleGenotype)
    data = json.loads((tmp_path / "genotype.json").read_text())
    assert list(data["choices"]) == list(data["options"])  # the model's decisions, in order
    for label, choice in data["choices"].items():
        assert choice in data["options"][label]
    summary = read_summary(tmp_path)
    assert summary["space"] == "module" and summary["genotype"] == str(genotype)
    assert summary["params"] > 0 and summary["macs"] > 0 and "test_acc" in summary
    # The exported TorchScript is the fixed model: the user's class with plain modules only.
    exported = torch.jit.load(str(tmp_path / "model.pt"))
    space = build_space("module", (1, 8, 8), 10, model=model, C=4, layers=3)
    child = space.build_child(genotype)
    assert not has_choices(child)
    x = torch.randn(2, 1, 8, 8)
    assert exported(x).shape == (2, 10)
    if "export.onnx=true" in extra:
        assert summary["export"]["onnx"]["max_abs_diff"] <= 1e-5


def test_retrain_inherits_the_supernet_weights(tmp_path, monkeypatch):
    """``retrain.inherit=true retrain.epochs=0``: the exported child holds exactly the
    searched supernet's weights at the chosen choices (inherit and evaluate)."""
    code = run_train_unlogged(
        monkeypatch, tmp_path, "search_space=module", "retrain.inherit=true", "retrain.epochs=0"
    )
    assert code == 0
    summary = read_summary(tmp_path)
    assert summary["retrain_inherited"] is True and summary["retrain_epochs"] == 0
    assert summary["test_acc"] is not None
    genotype = load_genotype(tmp_path / "genotype.json")
    space = build_space("module", (1, 8, 8), 10, model=CNN, C=4, layers=3)
    supernet = space.build_supernet()
    state = torch.load(tmp_path / "checkpoints" / "search" / "last.ckpt", weights_only=False)
    supernet.load_state_dict(
        {
            k[len("supernet.") :]: v
            for k, v in state["state_dict"].items()
            if k.startswith("supernet.")
        }
    )
    expected = space.child_from_supernet(supernet, genotype).state_dict()
    # The export wraps the child (``net.``) to return the logits alone.
    exported = {
        k.removeprefix("net."): v
        for k, v in torch.jit.load(str(tmp_path / "model.pt")).state_dict().items()
    }
    assert set(expected) == set(exported)
    for key, value in expected.items():
        torch.testing.assert_close(exported[key], value, rtol=0, atol=0, msg=key)


def test_inheriting_is_refused_up_front_where_a_space_cannot(tmp_path, monkeypatch):
    assert (
        run_train_unlogged(monkeypatch, tmp_path, "search_space=nb201", "retrain.inherit=true") != 0
    )
    assert not (tmp_path / "checkpoints").exists()  # refused before the search ran


def test_a_model_that_cannot_be_searched_is_refused_clearly(tmp_path, monkeypatch, capsys):
    code = run_train_unlogged(
        monkeypatch, tmp_path, "search_space=module", "search_space.model=examples.no_such.Model"
    )
    assert code != 0
    err = capsys.readouterr().err
    assert "search_space.model='examples.no_such.Model'" in err and "cannot be imported" in err


def test_the_readme_example_is_a_search_space(tmp_path, monkeypatch):
    """The README's model, as written there, is discovered with the decisions its genotype
    example names, and its fixed child runs."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Search your own model") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "readme_models.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("readme_models", None)
    space = build_space("module", (1, 8, 8), 10, model="readme_models.MyNet")
    genotype_json = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    assert [d.label for d in space.decisions] == list(genotype_json["choices"])
    genotype = space.resolve(ModuleGenotype.from_dict(genotype_json))
    assert space.build_child(genotype)(torch.randn(2, 1, 8, 8))[0].shape == (2, 10)


def test_darts_pt_selection_estimation_and_latency_tables_take_a_model(tmp_path, monkeypatch):
    """DARTS-PT's perturbation selection, zero-cost estimation of sampled architectures, and
    the measured latency table (one entry per joint choice of every choice place)."""
    assert (
        run_train_unlogged(
            monkeypatch, tmp_path / "pt", "search_space=module", "selection=pt", "stage=search"
        )
        == 0
    )
    assert isinstance(load_genotype(tmp_path / "pt" / "genotype.json"), ModuleGenotype)
    assert (
        run_train_unlogged(
            monkeypatch,
            tmp_path / "est",
            "search_space=module",
            "stage=estimate",
            "estimate.sample=6",
        )
        == 0
    )
    rows = (tmp_path / "est" / "estimates.csv").read_text().splitlines()
    assert len(rows) == 7 and all(
        r.split(",")[0].startswith('"module:') or "module:" in r for r in rows[1:]
    )
    assert (
        run_train_unlogged(monkeypatch, tmp_path / "lat", "search_space=module", "stage=latency")
        == 0
    )
    table = json.loads((tmp_path / "lat" / "latency_table.json").read_text())["table"]
    space = build_space("module", (1, 8, 8), 10, model=CNN, C=4, layers=3)
    from nas.hardware.costs import space_cost_model

    measured = {s.key for s in space_cost_model(space).op_shapes()}
    assert measured and measured <= set(table)


def test_same_seed_same_alphas_and_genotype(tmp_path, monkeypatch):
    """Reproducibility on CPU: one seed and config give the same α and genotype."""
    for name in ("a", "b"):
        assert (
            run_train_unlogged(
                monkeypatch, tmp_path / name, "search_space=module", "strategy=gdas", "stage=search"
            )
            == 0
        )
    a, b = (json.loads((tmp_path / n / "alphas.json").read_text()) for n in ("a", "b"))
    assert a == b
    assert (tmp_path / "a" / "genotype.json").read_text() == (
        tmp_path / "b" / "genotype.json"
    ).read_text()
    assert a["op_masks"]["decisions"][1] == [1, 1, 0]  # stem_kernel: 2 choices of 3 columns
