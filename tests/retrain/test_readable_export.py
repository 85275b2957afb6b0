"""What a person loads: ``model.json``'s preprocessing recipe, applied literally to the raw
dataset, reproduces the run's test accuracy with ``model.pt``; the README's example runs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from tests.helpers.paths import ROOT
from tests.helpers.runs import read_summary, run_train


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A small retrain of darts_v2 on the digits, scored on the whole held-out test split."""
    mp = pytest.MonkeyPatch()
    run = tmp_path_factory.mktemp("digits_retrain")
    overrides = [
        "stage=retrain",
        "genotype=darts_v2",
        "threads=1",
        "trainer.limit_train_batches=1.0",
        "trainer.limit_test_batches=1.0",
        "retrain.epochs=3",
        "retrain.batch_size=32",
        "export.latency_repeats=1",
    ]
    try:
        assert run_train(mp, run, *overrides, logger="none") == 0
    finally:
        mp.undo()
    return run


def test_model_json_recipe_reproduces_the_test_accuracy(digits_run):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    side = json.loads((digits_run / "model.json").read_text())
    recipe = side["preprocessing"]
    assert recipe["raw"].startswith("sklearn.datasets.load_digits().images")
    assert recipe["raw_range"] == [0, 16] and recipe["scale"] == 255
    assert "random_state=0" in recipe["test_split"] and "test_size=0.2" in recipe["test_split"]
    # The recipe, literally: the stated split of the raw images, then the formula.
    bunch = load_digits()
    _, raw, _, labels = train_test_split(
        bunch.images, bunch.target, test_size=0.2, stratify=bunch.target, random_state=0
    )
    assert raw.min() == 0 and raw.max() == 16
    shape = (1, -1, 1, 1)
    pixels = np.rint(raw[:, None] * recipe["pixel_scale"])
    x = (pixels / recipe["scale"] - np.reshape(recipe["mean"], shape)) / np.reshape(
        recipe["std"], shape
    )
    assert list(x.shape[1:]) == side["input_shape"]
    model = torch.jit.load(str(digits_run / "model.pt"))
    with torch.no_grad():
        predicted = model(torch.tensor(x, dtype=torch.float32)).argmax(1).numpy()
    accuracy = float((predicted == labels).mean())
    test_acc = read_summary(digits_run)["test_acc"]
    assert accuracy == pytest.approx(test_acc, abs=1e-6)
    assert test_acc > 0.3  # it learned: the check compares a real classifier, not chance
    # The old sidecar's reading (raw values taken for 0..255 pixels) scores far lower.
    wrong = (raw[:, None] / 255 - np.reshape(recipe["mean"], shape)) / np.reshape(
        recipe["std"], shape
    )
    with torch.no_grad():
        wrong_acc = model(torch.tensor(wrong, dtype=torch.float32)).argmax(1).numpy() == labels
    assert wrong_acc.mean() < test_acc - 0.2


def readme_example() -> str:
    """The README's Python block that loads ``model.pt`` (the one naming torch.jit.load)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    found = [b for b in blocks if "torch.jit.load" in b and "model.json" in b]
    assert len(found) == 1, "the README has one example that loads model.pt"
    return found[0]


def test_readme_example_runs_on_an_exported_run(digits_run, capsys):
    code = readme_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 14
    # The example's run directory is a placeholder: point it at the test's run.
    code, n = re.subn(r'^run = ".*"', f"run = {str(digits_run)!r}", code, flags=re.M)
    assert n == 1
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    child, logits = namespace["child"], namespace["logits"]
    assert isinstance(child, torch.nn.Module) and logits.shape == (1, 10)
    assert "predicted" in capsys.readouterr().out


def test_readme_history_snippet_plots_from_disk(tmp_path, monkeypatch):
    """The README's plotting snippet for logger=csv users reads a run's files and saves a PNG."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (code,) = [b for b in blocks if "search_history.jsonl" in b]
    run = tmp_path / "run"
    (run / "csv" / "search").mkdir(parents=True)
    history = [
        {"epoch": e, "alpha_entropy": 2.07 - 0.1 * e, "genotype/skip_connect": e} for e in range(3)
    ]
    (run / "search_history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    rows = ["epoch,step,search/val_acc,search/arch_acc", "0,5,0.5,", "0,5,,0.4", "1,10,0.7,"]
    (run / "csv" / "search" / "metrics.csv").write_text("\n".join(rows) + "\n")
    code, n = re.subn(r'^run = ".*"', f"run = {str(run)!r}", code, flags=re.M)
    assert n == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "search_progress.png").stat().st_size > 1000
