"""Language modelling through the whole run: ``examples.own_lm.TinyLM`` on ``data=text``
through search, discretize, retrain and export, with loss, bits per byte and perplexity in
summary.json and the logs; a user's folder as the corpus; ``stage=profile`` on token input."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from nas.core.genotype import load_genotype
from supernet.spaces import build_space
from tests.helpers.runs import read_summary, run_train, run_train_unlogged

LM = ["search_space=module", "search_space.model=examples.own_lm.TinyLM", "data=text"]


def _last(path, column: str) -> float:
    """The last non-empty value of a column of a Lightning CSV log."""
    with open(path, newline="") as f:
        values = [row[column] for row in csv.DictReader(f) if row.get(column)]
    assert values, column
    return float(values[-1])


def _consistent(summary: dict, prefix: str) -> None:
    loss = summary[f"{prefix}loss"]
    assert 0 < loss < 2 * math.log(256)
    assert summary[f"{prefix}bits_per_byte"] == pytest.approx(loss / math.log(2), rel=1e-6)
    assert summary[f"{prefix}perplexity"] == pytest.approx(math.exp(loss), rel=1e-6)


def test_the_lm_runs_the_pipeline(tmp_path, monkeypatch):
    code = run_train(monkeypatch, tmp_path, *LM)
    assert code == 0
    summary = read_summary(tmp_path)
    assert summary["data"] == "text" and summary["space"] == "module"
    _consistent(summary, "test_")  # byte tokens: bits per byte = loss / ln 2
    _consistent(summary, "search_val_")
    assert 0 <= summary["test_acc"] <= 1  # next-token accuracy
    corpus = summary["corpus"]
    assert corpus["tokenizer"] == "bytes" and corpus["vocab_size"] == 256
    assert corpus["context"] == 64 and len(corpus["sha256"]) == 64
    assert set(summary["search_windows"]) == {"train", "val"}
    assert set(summary["retrain_windows"]) == {"train", "test"}
    assert summary["params"] > 0 and summary["macs"] > 0

    # The logs: the stage's CSV holds the same numbers the summary reports.
    retrain_log = tmp_path / "csv" / "retrain" / "metrics.csv"
    for name in ("loss", "bits_per_byte", "perplexity"):
        logged = _last(retrain_log, f"retrain/test_{name}")
        assert logged == pytest.approx(summary[f"test_{name}"], rel=1e-6)
    logged = _last(tmp_path / "csv" / "search" / "metrics.csv", "search/val_bits_per_byte")
    assert logged == pytest.approx(summary["search_val_bits_per_byte"], rel=1e-6)

    # The export takes token ids and returns next-token logits [N * T, V], as the child does.
    sidecar = json.loads((tmp_path / "model.json").read_text())
    assert sidecar["input"].startswith("int64 token ids [N, 64]")
    assert sidecar["preprocessing"]["tokenizer"] == "bytes"
    assert summary["export"]["torchscript"]["max_abs_diff"] <= 1e-5
    exported = torch.jit.load(str(tmp_path / "model.pt"))
    space = build_space("module", [64], 256, model="examples.own_lm.TinyLM", C=4, layers=3)
    child = space.build_child(load_genotype(tmp_path / "genotype.json"))
    state = torch.load(tmp_path / "checkpoints" / "retrain" / "last.ckpt", weights_only=False)
    child.load_state_dict({k.removeprefix("model."): v for k, v in state["state_dict"].items()})
    x = torch.randint(0, 256, (3, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = exported(x)
        assert out.shape == (3 * 64, 256)
        torch.testing.assert_close(out, child.eval()(x)[0], atol=1e-5, rtol=1e-5)

    # stage=profile on the genotype: MACs and latency on token input.
    profile_dir = tmp_path / "profile"
    code = run_train_unlogged(
        monkeypatch, profile_dir, *LM, "stage=profile", f"genotype={tmp_path / 'genotype.json'}"
    )
    assert code == 0
    profiled = read_summary(profile_dir)
    assert profiled["macs"] == summary["macs"] and profiled["latency_ms"] > 0


def test_a_folder_is_the_corpus(tmp_path, monkeypatch):
    corpus = tmp_path / "notes"
    (corpus / "sub").mkdir(parents=True)
    for i in range(3):
        (corpus / f"part{i}.txt").write_text(
            "".join(f"note {i}.{j}: searching a small language model\n" for j in range(40)),
            encoding="utf-8",
        )
    (corpus / "sub" / "code.py").write_text("print('hello')\n" * 20, encoding="utf-8")
    run_dir = tmp_path / "run"
    code = run_train_unlogged(
        monkeypatch, run_dir, *LM, f"data.path={corpus}", "data.input_shape=[16]",
        "strategy.batch_size=8", "retrain.batch_size=8",
    )  # fmt: skip
    assert code == 0
    summary = read_summary(run_dir)
    assert summary["corpus"]["corpus"] == str(corpus) and summary["corpus"]["files"] == 4
    expected = sum(len(p.read_bytes()) for p in corpus.rglob("*.*")) + 3  # joined by newlines
    assert summary["corpus"]["bytes"] == expected
    _consistent(summary, "test_")


def test_bad_text_input_fails_before_the_run(tmp_path, monkeypatch, capsys):
    code = run_train_unlogged(monkeypatch, tmp_path, *LM, "data.hflip=true")
    assert code == 2
    err = capsys.readouterr().err
    assert "data.hflip=true is an image setting" in err and "data.hflip=false" in err
    assert not (tmp_path / "summary.json").exists()
