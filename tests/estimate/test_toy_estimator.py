"""The "add an estimator" recipe (ARCHITECTURE.md): an estimator defined and registered in this
one file is named on the command line and its score lands in ``summary.json``, with no edit
under ``nas/``; an unknown name is refused before the run starts."""

from __future__ import annotations

from typing import Any

import pytest

from nas.estimate import ESTIMATORS, Estimator, register_estimator
from tests.helpers.runs import read_summary, run_train_unlogged


class KeptOpCount(Estimator):
    """A toy zero-cost score: how many kept ops carry parameters (the larger, the "better")."""

    calls: list[str] = []

    def applies_to(self, space) -> bool:
        return space.name == "darts"  # a toy that scores only DARTS cells

    def estimate(self, space, genotype) -> dict[str, Any]:
        KeptOpCount.calls.append(str(genotype))
        kept = [op for edges in genotype.kept_edges().values() for op, _, _ in edges]
        return {
            "available": True,
            "score": sum(op not in ("skip_connect", "max_pool_3x3", "avg_pool_3x3") for op in kept),
        }


@pytest.fixture
def toy_estimator():
    register_estimator("kept_ops", KeptOpCount)
    KeptOpCount.calls.clear()
    yield
    ESTIMATORS.pop("kept_ops")


def test_a_registered_estimator_scores_the_found_genotype(toy_estimator, monkeypatch, tmp_path):
    rc = run_train_unlogged(
        monkeypatch, tmp_path, "stage=search", "estimators=[benchmark,kept_ops]", "threads=1"
    )
    assert rc == 0
    summary = read_summary(tmp_path)
    assert KeptOpCount.calls == [summary["genotype"]]
    assert summary["kept_ops"]["available"] is True
    assert 0 <= summary["kept_ops"]["score"] <= 16  # 8 kept ops per cell type
    assert "benchmark" not in summary  # the benchmark lookup does not apply to DARTS cells


def test_an_unknown_estimator_is_refused_naming_the_valid_ones(monkeypatch, tmp_path, capsys):
    rc = run_train_unlogged(monkeypatch, tmp_path, "stage=search", "estimators=[nope]")
    out = capsys.readouterr()
    assert rc != 0
    text = out.out + out.err
    assert "estimators: unknown estimator 'nope'" in text and "benchmark" in text
    assert not (tmp_path / "summary.json").exists()
