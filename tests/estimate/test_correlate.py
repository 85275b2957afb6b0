"""The correlation report (nas/estimate/correlate.py): ρ, τ and top-k% precision checked against
hand computations and direct formulas, nan/inf rows dropped and counted, the CLI's join of
estimates.csv with a collect table or a NAS-Bench-201 lookup, its files and its errors."""

from __future__ import annotations

import csv
import itertools
import json
import math

import numpy as np
import pytest

from nas.core.genotype import NB201Genotype
from nas.estimate import correlate
from nas.estimate.correlate import CorrelateError, correlations, main, truth_from_benchmark

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


# ---- direct formulas (no ties) -------------------------------------------------------------
def spearman_formula(x, y) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    n = len(x)
    return 1 - 6 * float(((rx - ry) ** 2).sum()) / (n * (n * n - 1))


def kendall_formula(x, y) -> float:
    pairs = list(itertools.combinations(range(len(x)), 2))
    signs = [np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in pairs]
    return float(sum(signs)) / len(pairs)


def top_k_formula(x, y, percent) -> float:
    k = max(1, math.ceil(len(x) * percent / 100 - 1e-9))
    top = lambda v: set(np.argsort(-np.asarray(v))[:k].tolist())  # noqa: E731
    return len(top(x) & top(y)) / k


# ---- the measures --------------------------------------------------------------------------
def test_hand_computed_values():
    score = np.array([1.0, 2, 3, 4, 5])
    truth = np.array([5.0, 6, 7, 9, 8])
    # Ranks of the truth: 1 2 3 5 4, d² sums to 2: ρ = 1 - 6·2 / (5·24) = 0.9; of the 10
    # pairs only (3, 4) is discordant: τ = (9 - 1) / 10 = 0.8.
    r = correlations({"p": score}, truth, top_k_percent=40)["p"]
    assert r["spearman"] == pytest.approx(0.9) and r["kendall"] == pytest.approx(0.8)
    assert r["top_k"] == 2 and r["top_k_precision"] == 1.0  # both top-2: rows 3 and 4
    assert r["n"] == 5 and r["n_nonfinite"] == 0
    r = correlations({"p": score}, truth, top_k_percent=20)["p"]
    assert r["top_k"] == 1 and r["top_k_precision"] == 0.0  # score's best: row 4; truth's: 3
    r = correlations({"neg": -score}, truth, top_k_percent=40)["neg"]
    assert r["spearman"] == pytest.approx(-0.9) and r["kendall"] == pytest.approx(-0.8)
    assert r["top_k_precision"] == 0.0


def test_nonfinite_scores_are_dropped_and_counted():
    score = np.array([1.0, np.nan, 3, np.inf, 5, 2])
    truth = np.array([1.0, 2, 3, 4, 5, 6])
    r = correlations({"p": score}, truth, top_k_percent=50)["p"]
    assert r["n"] == 4 and r["n_nonfinite"] == 2
    # Left: score 1 3 5 2, truth 1 3 5 6; score ranks 1 3 4 2, truth ranks 1 2 3 4:
    # d² = 0 + 1 + 1 + 4 = 6, ρ = 1 - 36 / 60 = 0.4; pairs (1,3) and (2,3) discordant of 6:
    # τ = (4 - 2) / 6; top-2 by score: the 5 and the 3, by truth: the 6 and the 5: 1 of 2.
    assert r["spearman"] == pytest.approx(0.4)
    assert r["kendall"] == pytest.approx(1 / 3)
    assert r["top_k"] == 2 and r["top_k_precision"] == 0.5
    # A row without a finite truth is left out before (not counted as the score's).
    r = correlations({"p": [1.0, 2.0, 3.0]}, np.array([1.0, np.nan, 3.0]))["p"]
    assert r["n"] == 2 and r["n_nonfinite"] == 0 and r["spearman"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_direct_formulas(seed):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=40)
    scores = {"a": truth + rng.normal(size=40), "b": rng.normal(size=40)}
    results = correlations(scores, truth, top_k_percent=25)
    for name, x in scores.items():
        r = results[name]
        assert r["spearman"] == pytest.approx(spearman_formula(x, truth))
        assert r["kendall"] == pytest.approx(kendall_formula(x, truth))
        assert r["top_k"] == 10
        assert r["top_k_precision"] == pytest.approx(top_k_formula(x, truth, 25))


def test_top_k_size_and_undefined_correlations():
    # k = ceil(n · k% / 100), at least 1; 30 · 10 / 100 is 3, not 4 (float round-off).
    for n, percent, k in [(30, 10, 3), (25, 10, 3), (5, 1, 1), (7, 100, 7)]:
        r = correlations({"p": np.arange(n, dtype=float)}, np.arange(n, dtype=float), percent)
        assert r["p"]["top_k"] == k and r["p"]["top_k_precision"] == 1.0
    r = correlations({"const": np.ones(4), "one": [1.0, np.nan, np.nan, np.nan]}, np.arange(4.0))
    assert math.isnan(r["const"]["spearman"]) and math.isnan(r["const"]["kendall"])
    assert r["one"]["n"] == 1 and math.isnan(r["one"]["spearman"])
    with pytest.raises(ValueError, match="top_k_percent=0"):
        correlations({"p": [1.0]}, np.array([1.0]), 0)


# ---- the command ---------------------------------------------------------------------------
def genotype(i: int) -> NB201Genotype:
    """The i-th of NB201's 5^6 genotypes (edge e's op: base-5 digit e of i)."""
    ops = [OPS[(i // 5**e) % 5] for e in range(6)]
    return NB201Genotype(
        nodes=[[(ops[0], 0)], [(ops[1], 0), (ops[2], 1)], [(ops[3], 0), (ops[4], 1), (ops[5], 2)]]
    )


def write_csv(path, header, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def files(tmp_path):
    """estimates.csv (5 architectures: two as genotype JSON, one proxy with inf, a text
    column) and a collect-style results_jobs.csv listing them in another order, one twice
    (two seeds), one without a test accuracy and one that was not estimated."""
    g = [genotype(i) for i in (7, 100, 2024, 9000, 15000, 77)]
    arch = [json.dumps(x.to_dict()) if i in (1, 3) else str(x) for i, x in enumerate(g)]
    estimates = write_csv(
        tmp_path / "estimates.csv",
        ["arch", "synflow", "jacov", "params", "macs", "note"],
        [
            [arch[0], 1, 5, 1e4, 10, "a"],
            [arch[1], 2, "inf", 1e5, 20, "b"],
            [arch[2], 3, 3, 1e6, 30, "c"],
            [arch[3], 4, 2, 1e7, 40, "d"],
            [arch[4], 5, "nan", 1e8, 50, "e"],
            [arch[5], 6, 1, 1e9, 60, "f"],
        ],
    )
    truth = write_csv(
        tmp_path / "results_jobs.csv",
        ["config", "seed", "test_acc_pct", "genotype", "job_dir"],
        [
            ["default", 0, 98.0, str(g[3]), "/j/0"],  # 98 and 100: mean 99
            ["default", 1, 100.0, str(g[3]), "/j/1"],
            ["default", 2, 95.0, str(g[0]), "/j/2"],
            ["default", 3, 97.0, str(g[2]), "/j/3"],
            ["default", 4, 96.0, str(g[1]), "/j/4"],
            ["default", 5, 98.0, str(g[4]), "/j/5"],
            ["default", 6, "", str(g[5]), "/j/6"],  # a search-only job: no test accuracy
            ["default", 7, 50.0, str(genotype(3)), "/j/7"],  # not estimated
        ],
    )
    return estimates, truth


def test_cli_joins_scores_and_writes_the_report(files, tmp_path, capsys):
    estimates, truth = files
    out = tmp_path / "report"
    assert main([str(estimates), str(truth), "--top-k", "40", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "5 of 6 estimated architectures" in printed
        and "Skipped non-numeric columns: note" in printed
    )
    report = json.loads((out / "correlations.json").read_text())
    assert report["truth_column"] == "test_acc_pct"  # --column test_acc: collect's percent one
    assert (report["n_estimates"], report["n_truth"], report["n_matched"]) == (6, 7, 5)
    assert report["n_truth_missing"] == 1 and report["skipped_columns"] == ["note"]
    assert list(report["columns"]) == ["synflow", "jacov", "params", "macs"]
    # Estimates' rows 0..4 have the truth 95, 96, 97, 99, 98 (row 3: mean of two seeds): the
    # hand-computed case, ρ = 0.9, τ = 0.8, top-2 of 5 both right.
    syn = report["columns"]["synflow"]
    assert syn["spearman"] == pytest.approx(0.9) and syn["kendall"] == pytest.approx(0.8)
    assert (syn["top_k"], syn["top_k_precision"], syn["n"], syn["n_nonfinite"]) == (2, 1.0, 5, 0)
    assert report["columns"]["params"] == syn and report["columns"]["macs"] == syn
    truth_values = np.array([95.0, 96, 97, 99, 98])
    expected = correlations({"jacov": np.array([5, np.inf, 3, 2, np.nan])}, truth_values, 40)
    jacov = report["columns"]["jacov"]
    assert jacov == pytest.approx(expected["jacov"])
    assert jacov["n"] == 3 and jacov["n_nonfinite"] == 2 and jacov["spearman"] == -1.0
    with (out / "correlations.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["column"] for r in rows] == ["synflow", "jacov", "params", "macs"]
    assert float(rows[0]["spearman"]) == pytest.approx(0.9) and rows[1]["n_nonfinite"] == "2"
    for name in ("synflow", "jacov", "params", "macs"):
        png = out / f"scatter_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["correlations.json", "correlations.csv"]
        + [f"scatter_{n}.png" for n in ("synflow", "jacov", "params", "macs")]
    )


def test_cli_errors_are_one_paragraph(files, tmp_path, capsys):
    estimates, truth = files

    def error(*args: str) -> str:
        assert main([*map(str, args), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        return err

    assert "estimates file" in error(tmp_path / "missing.csv", truth)
    assert "does not exist" in error(estimates, tmp_path / "missing.csv")
    assert "does not exist" in error(estimates, tmp_path / "missing.pth")
    err = error(estimates, truth, "--column", "val_acc")
    assert "no column 'val_acc' or 'val_acc_pct'" in err
    assert "config, seed, test_acc_pct, genotype, job_dir" in err
    no_arch = write_csv(tmp_path / "e.csv", ["architecture", "synflow"], [["x", 1]])
    assert "no column 'arch'. Its columns are: architecture, synflow" in error(no_arch, truth)
    other = write_csv(
        tmp_path / "other.csv",
        ["arch", "test_acc"],
        [[str(genotype(1)), 90], [str(genotype(2)), 91]],
    )
    err = error(estimates, other)
    assert "No architecture of the estimates file" in err and "(2 architectures)" in err
    unknown = write_csv(tmp_path / "u.csv", ["arch", "test_acc"], [["not an arch", 1.0]])
    assert "No architecture" in error(estimates, unknown)
    assert not (tmp_path / "o").exists()


def test_truth_from_a_benchmark_file(files, tmp_path, monkeypatch, capsys):
    estimates, _ = files
    bench = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    bench.write_bytes(b"")
    calls = []

    def fake(path, archs, dataset):
        calls.append((str(path), list(archs), dataset))
        return np.array([10.0, 20, 30, 40, 50, np.nan])

    monkeypatch.setattr(correlate, "truth_from_benchmark", fake)
    assert main([str(estimates), str(bench), "--dataset", "cifar100"]) == 0
    ((path, archs, dataset),) = calls
    # JSON rows are looked up by their NAS-Bench-201 string.
    assert path == str(bench) and dataset == "cifar100"
    assert archs == [str(genotype(i)) for i in (7, 100, 2024, 9000, 15000, 77)]
    report = json.loads((estimates.parent / "correlations.json").read_text())
    assert report["truth_column"] == "cifar100_test_acc" and report["n_matched"] == 5
    assert report["columns"]["synflow"]["spearman"] == pytest.approx(1.0)


def test_truth_from_benchmark_reads_the_lookup(monkeypatch):
    from nas.estimate import benchmark

    table = {str(genotype(1)): 91.5, str(genotype(2)): 93.25}

    def lookup(arch, path, *args, **kwargs):
        if arch in table:
            return {"available": True, "cifar10_test_acc": table[arch], "cifar100_test_acc": 0}
        return {"available": False, "reason": f"architecture {arch} not in the benchmark"}

    monkeypatch.setattr(benchmark, "lookup", lookup)
    archs = [str(genotype(i)) for i in (2, 3, 1)]
    values = truth_from_benchmark("b.pth", archs, "cifar10")
    np.testing.assert_array_equal(values, [93.25, np.nan, 91.5])
    with pytest.raises(CorrelateError, match="first reason: architecture .* not in the benchmark"):
        truth_from_benchmark("b.pth", [str(genotype(3))], "cifar10")
    with pytest.raises(CorrelateError, match="'cifar11' is not a NAS-Bench-201 dataset"):
        truth_from_benchmark("b.pth", archs, "cifar11")


def test_non_nb201_estimates_cannot_use_a_benchmark_file(tmp_path, capsys):
    estimates = write_csv(
        tmp_path / "estimates.csv", ["arch", "synflow"], [["mbconv:k3_e3-zero-k5_e6", 1.0]]
    )
    bench = tmp_path / "b.pth"
    bench.write_bytes(b"")
    assert main([str(estimates), str(bench)]) == 2
    assert "is not a NAS-Bench-201 architecture" in capsys.readouterr().err
