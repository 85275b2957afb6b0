"""``stage=estimate``: proxies score many architectures of every space into ``estimates.csv``,
one row as each is scored, surviving a real ``kill -9`` (``resume=auto`` scores only the
missing rows), with figures, summary statistics and clear errors."""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from nas.estimate.archs import all_archs, parse_arch, read_archs, sample_archs
from nas.estimate.proxies import ProxyInputs, get_proxy
from supernet.spaces import build_space
from tests.helpers.paths import ROOT
from tests.helpers.runs import read_summary, run_train_py

NB201_DIGITS = ["stage=estimate", "search_space=nb201", "logger=none", "threads=1"]


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "estimates.csv", newline="") as f:
        return list(csv.DictReader(f))


def direct_score(arch_text: str, proxy: str, seed: int, C: int = 16, layers: int = 5) -> float:
    """The score computed without the stage: the NB201 digits child (the nb201 recipe's size:
    C=16, N=5), initialised after seeding, as ``nas.estimate.scoring`` documents."""
    space = build_space("nb201", [1, 8, 8], 10)
    genotype = parse_arch(arch_text, space)
    torch.manual_seed(seed)
    model = space.build_child(genotype, C=C, layers=layers, auxiliary=False).train()
    torch.manual_seed(seed)
    inputs = ProxyInputs(model, [1, 8, 8], 10, [], seed=seed)
    return float(get_proxy(proxy).score(inputs))


def test_nb201_estimates_csv_summary_and_figures(tmp_path, monkeypatch):
    run = tmp_path / "e"
    code = run_train_py(
        monkeypatch,
        run,
        *NB201_DIGITS,
        "estimate.sample=6",
        "estimate.proxies=[synflow,nwot,params]",
    )
    assert code == 0
    table = rows(run)
    assert list(table[0]) == ["arch", "synflow", "nwot", "params", "macs"]
    assert len(table) == 6 and len({r["arch"] for r in table}) == 6
    space = build_space("nb201", [1, 8, 8], 10)
    expected = [a.text for a in sample_archs(space, 6, seed=0)]
    assert [r["arch"] for r in table] == expected  # the seeded sample, in order
    # synflow (data-free) equals the proxy computed directly on the same seeded network
    for r in table[:2]:
        assert float(r["synflow"]) == pytest.approx(direct_score(r["arch"], "synflow", 0))
        child = space.build_child(parse_arch(r["arch"], space), C=16, layers=5, auxiliary=False)
        assert int(r["params"]) == sum(p.numel() for p in child.parameters())
        assert int(r["macs"]) > 0
    summary = read_summary(run)
    assert summary["archs"] == 6 and summary["proxies"] == ["synflow", "nwot", "params"]
    stats = summary["proxy_stats"]["synflow"]
    finite = [float(r["synflow"]) for r in table if math.isfinite(float(r["synflow"]))]
    assert stats["finite"] + stats["non_finite"] == 6 and stats["max"] == max(finite)
    assert stats["best_arch"] == next(
        r["arch"] for r in table if float(r["synflow"]) == max(finite)
    )
    for name in ("synflow", "nwot", "params", "macs"):
        png = Path(summary["figures"][name])
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size[0] > 500
    assert json.loads((run / "estimates_state.json").read_text())["estimate"]["batches"] == 1


@pytest.mark.parametrize("space", ["darts", "mbconv"])
def test_every_space_with_a_data_free_and_a_data_based_proxy(space, tmp_path, monkeypatch):
    run = tmp_path / space
    code = run_train_py(
        monkeypatch, run, "stage=estimate", f"search_space={space}", "logger=none",
        "threads=1", "estimate.sample=2", "estimate.proxies=[synflow,snip]",
        "estimate.batch_size=16", "estimate.figures=false",
    )  # fmt: skip
    assert code == 0
    table = rows(run)
    assert len(table) == 2
    for r in table:
        assert math.isfinite(float(r["synflow"])) and float(r["snip"]) > 0
    assert read_summary(run)["estimate_batch_size"] == 16


def test_an_architecture_file_is_read_as_written_and_a_bad_line_is_named(tmp_path, monkeypatch):
    space = build_space("nb201", [1, 8, 8], 10)
    a, b = (x.genotype for x in sample_archs(space, 2, seed=5))
    archs = tmp_path / "archs.txt"
    archs.write_text(f"# two cells\n{a}\n\n{json.dumps(b.to_dict())}\n")
    run = tmp_path / "f"
    code = run_train_py(
        monkeypatch, run, *NB201_DIGITS, f"estimate.archs={archs}",
        "estimate.proxies=[params]", "estimate.figures=false",
    )  # fmt: skip
    assert code == 0
    assert [r["arch"] for r in rows(run)] == [str(a), json.dumps(b.to_dict())]
    archs.write_text(f"{a}\n|nor_conv_3x3~0|+|bogus~0|\n")
    with pytest.raises(ValueError, match=r"archs.txt, line 2: .*nb201"):
        read_archs(archs, space)


def test_bad_settings_fail_before_any_work(tmp_path, monkeypatch, capsys):
    cases = [
        (["search_space=darts", "estimate.sample=all"], "too large to enumerate"),
        (["estimate.proxies=[synflo]"], "estimate.proxies: unknown zero-cost proxy 'synflo'"),
        (["estimate.sample=0"], "estimate.sample=0"),
        (["estimate.batches=0", "estimate.proxies=[nwot]"], "estimate.batches=0"),
        ([f"estimate.archs={tmp_path / 'missing.txt'}"], "no such file"),
    ]
    for overrides, message in cases:
        run = tmp_path / f"bad{len(message)}"
        code = run_train_py(
            monkeypatch, run, "stage=estimate", "logger=none", "search_space=nb201", *overrides
        )
        err = capsys.readouterr().err
        assert code == 2, (overrides, err)
        assert message in err, (overrides, err)
        assert not (run / "estimates.csv").exists()


def test_nb201_enumerates_every_cell_once():
    space = build_space("nb201", [3, 32, 32], 10)
    texts = [a.text for a in all_archs(space)]
    assert len(texts) == len(set(texts)) == 5**6 == space.genotype_count()
    assert len(sample_archs(space, 10**6, seed=0)) == 5**6  # more than there are: all of them


def test_kill_9_mid_job_then_resume_auto_scores_only_the_missing_rows(
    tmp_path, monkeypatch, capsys
):
    """A real process killed with SIGKILL while it writes rows; resume=auto in the same run
    directory keeps every complete row, scores the rest once, and equals direct scoring."""
    run = tmp_path / "k"
    n = 120
    overrides = [
        *NB201_DIGITS, f"estimate.sample={n}", "estimate.proxies=[synflow]",
        "estimate.figures=false", "retrain.C=4", "retrain.layers=1",
    ]  # fmt: skip
    args = [sys.executable, "train.py", f"hydra.run.dir={run}", *overrides]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    csv_path = run / "estimates.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if csv_path.exists() and csv_path.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # every row is flushed as it is written: what is on disk is a prefix of the job's rows
    before = csv_path.read_text().count("\n") - 1
    assert 0 < before < n, "the kill did not land mid-job"
    assert run_train_py(monkeypatch, run, *overrides, "resume=auto") == 0
    table = rows(run)
    space = build_space("nb201", [1, 8, 8], 10)
    assert [r["arch"] for r in table] == [a.text for a in sample_archs(space, n, seed=0)]
    summary = read_summary(run)
    assert (
        summary["resumed_rows"] >= before and summary["scored_now"] == n - summary["resumed_rows"]
    )
    for r in (table[0], table[-1]):
        assert float(r["synflow"]) == pytest.approx(direct_score(r["arch"], "synflow", 0, 4, 1))
    # another config in the same run directory is refused, not mixed in
    capsys.readouterr()
    assert run_train_py(monkeypatch, run, *overrides, "seed=1", "resume=auto") == 2
    assert "refusing to mix them" in capsys.readouterr().err


def truth_csv(path: Path, space, archs) -> Path:
    """A collected-table-like truth: the genotype column and test_acc_pct, here a known
    function of the architecture (3x3 convolutions count most), two seeds for the first."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "seed", "test_acc_pct", "genotype"])
        for k, a in enumerate(archs):
            ops = [op for op, _, _ in a.genotype.kept_edges()["cell"]]
            acc = 50 + 8 * ops.count("nor_conv_3x3") + 3 * ops.count("nor_conv_1x1")
            acc -= 5 * ops.count("none")
            w.writerow([f"job{k}", 0, acc, a.text])
            if k == 0:
                w.writerow([f"job{k}b", 1, acc + 2, a.text])  # a second seed: the mean is used
    return path


def test_truth_predictor_and_funnel(tmp_path, monkeypatch):
    space = build_space("nb201", [1, 8, 8], 10)
    archs = sample_archs(space, 40, seed=1)
    truth = truth_csv(tmp_path / "truth.csv", space, archs)
    listed = tmp_path / "archs.txt"
    listed.write_text("\n".join(a.text for a in archs) + "\n")
    run = tmp_path / "t"
    code = run_train_py(
        monkeypatch, run, *NB201_DIGITS, f"estimate.archs={listed}", "retrain.C=4",
        "retrain.layers=1", "estimate.proxies=[params,synflow]", "estimate.figures=false",
        f"estimate.truth={truth}", "estimate.predictor=rf", "estimate.predictor_features=[synflow]",
        "estimate.top_k=3", "estimate.rank_by=predictor",
    )  # fmt: skip
    assert code == 0
    summary = read_summary(run)
    corr = summary["correlations"]
    assert corr["n_matched"] == 40 and corr["truth_column"] == "test_acc_pct"
    report = json.loads((run / "correlations" / "correlations.json").read_text())
    assert report["columns"]["params"]["spearman"] == pytest.approx(
        corr["columns"]["params"]["spearman"]
    )
    pred = summary["predictor"]
    assert pred["features"] == ["synflow"]
    assert pred["train_archs"] + pred["train_dropped_nonfinite"] == 40
    assert pred["cv_spearman"] > 0.5  # a learnable truth
    with open(run / "predictions.csv", newline="") as f:
        ranked = list(csv.DictReader(f))
    values = [float(r["predicted_test_acc"]) for r in ranked]
    assert len(ranked) == 40 and values == sorted(values, reverse=True)
    top = summary["top"]
    assert top["rank_by"] == "predictor" and top["archs"] == [r["arch"] for r in ranked[:3]]
    from nas.core.genotype import load_genotype

    assert [str(load_genotype(p)) for p in top["files"]] == top["archs"]
    assert top["retrain"].startswith("python train.py -m stage=retrain search_space=nb201")


@pytest.mark.parametrize("method", ["evolution", "local_search", "bananas"])
def test_black_box_search_over_a_proxy_writes_its_trace_and_best_genotype(
    method, tmp_path, monkeypatch
):
    run = tmp_path / method
    code = run_train_py(
        monkeypatch, run, *NB201_DIGITS, f"estimate.search={method}", "estimate.budget=12",
        "estimate.objective=synflow", "estimate.population=4", "estimate.num_init=4",
        "estimate.batch=4", "estimate.epochs=30", "retrain.C=4", "retrain.layers=1",
    )  # fmt: skip
    assert code == 0
    summary = read_summary(run)["black_box"]
    with open(run / "black_box_trace.csv", newline="") as f:
        trace = list(csv.DictReader(f))
    assert len(trace) == summary["evaluations"] == 12 and len({r["arch"] for r in trace}) == 12
    scores = [float(r["synflow"]) for r in trace]
    best = [float(r["best_so_far"]) for r in trace]
    assert best == [max(scores[: i + 1]) for i in range(12)]
    assert summary["best_score"] == max(scores)
    from nas.core.genotype import load_genotype

    best_arch = trace[scores.index(max(scores))]["arch"]
    assert str(load_genotype(run / "genotype.json")) == best_arch == summary["best_arch"]
    assert float(best_arch and direct_score(best_arch, "synflow", 0, 4, 1)) == pytest.approx(
        max(scores)
    )


def test_black_box_settings_are_checked_first(tmp_path, monkeypatch, capsys):
    cases = [
        (["estimate.search=evolve"], "estimate.search: unknown black-box search method 'evolve'"),
        (["estimate.search=evolution", "estimate.population=1"], "estimate.population=1"),
        (["estimate.search=random", "estimate.objective=benchmark"], "no benchmark file"),
        (
            ["estimate.search=random", "estimate.objective=accuracy"],
            "estimate.objective='accuracy'",
        ),
        (["estimate.predictor=rf"], "estimate.predictor=rf learns from evaluated architectures"),
        (["estimate.predictor_features=[zen]"], "Not scored here: ['zen']"),
    ]
    for k, (overrides, message) in enumerate(cases):
        code = run_train_py(monkeypatch, tmp_path / f"b{k}", *NB201_DIGITS, *overrides)
        err = capsys.readouterr().err
        assert code == 2 and message in err, (overrides, err)


def test_two_worker_processes_write_the_same_rows_in_order(tmp_path, monkeypatch):
    """estimate.workers=2: spawned processes score disjoint architectures; the rows come back in
    order and equal one process's (each network's initialisation depends on the seed only)."""
    common = [*NB201_DIGITS, "estimate.sample=24", "estimate.proxies=[synflow,params]",
              "estimate.figures=false", "retrain.C=4", "retrain.layers=1"]  # fmt: skip
    assert run_train_py(monkeypatch, tmp_path / "one", *common) == 0
    assert run_train_py(monkeypatch, tmp_path / "two", *common, "estimate.workers=2") == 0
    assert rows(tmp_path / "one") == rows(tmp_path / "two")
    assert read_summary(tmp_path / "two")["workers"] == 2


def test_with_wandb_the_table_figures_and_summary_go_to_the_run(tmp_path, monkeypatch):
    from tests.helpers.wandb_records import read_run

    run = tmp_path / "w"
    code = run_train_py(
        monkeypatch, run, "stage=estimate", "search_space=nb201", "logger=wandb", "threads=1",
        "estimate.sample=5", "estimate.proxies=[synflow,params]", "retrain.C=4", "retrain.layers=1",
    )  # fmt: skip
    assert code == 0
    (wandb_dir,) = (run / "wandb").glob("offline-run-*")
    record = read_run(wandb_dir)
    assert record["run"]["job_type"] == "estimate"
    history = record["history"]  # nested values are flattened: estimate/table/nrows
    assert history["estimate/table/_type"] == ["table-file"]
    assert history["estimate/table/nrows"] == [5] and history["estimate/table/ncols"] == [4]
    for name in ("synflow", "params", "macs"):
        assert history[f"estimate/{name}/_type"] == ["image-file"]
    assert record["summary"]["archs"] == 5
    assert read_summary(run)["wandb"]["estimate"]["job_type"] == "estimate"


def test_black_box_over_a_trained_supernets_inherited_weights(tmp_path, monkeypatch, capsys):
    """objective=supernet: candidates scored by the search's supernet on validation batches
    (accuracies of one 16-image batch: multiples of 1/16); a checkpoint of another config is
    refused, naming the difference."""
    smoke = ["experiment=smoke", "search_space=nb201", "data=synthetic", "logger=none"]
    assert run_train_py(monkeypatch, tmp_path / "s", *smoke, "stage=search") == 0
    bb = [*smoke, "stage=estimate", "estimate.search=evolution", "estimate.objective=supernet",
          f"estimate.supernet={tmp_path / 's'}", "estimate.budget=8", "estimate.population=4"]  # fmt: skip
    assert run_train_py(monkeypatch, tmp_path / "b", *bb) == 0
    with open(tmp_path / "b" / "black_box_trace.csv", newline="") as f:
        scores = [float(r["supernet"]) for r in csv.DictReader(f)]
    assert len(scores) == 8 and all(0 <= s <= 1 and (16 * s).is_integer() for s in scores)
    summary = read_summary(tmp_path / "b")["black_box"]
    assert summary["best_score"] == max(scores) and summary["objective"] == "supernet"
    capsys.readouterr()
    assert run_train_py(monkeypatch, tmp_path / "c", *bb, "seed=1") == 2
    assert "belongs to a different run" in capsys.readouterr().err


def test_a_benchmark_file_as_truth_trains_the_predictor_and_scores_the_proxies(
    tmp_path, monkeypatch
):
    """estimate.truth=<NAS-Bench-201 file>: the proxies are correlated with the benchmark's
    accuracies and the predictor trains on estimate.predictor_train random cells looked up
    there. The fixture file holds 5 cells: every cell is answered with one of their records
    read from the file (chosen by the cell's text), so every lookup is available."""
    import zlib

    from nas.estimate.benchmarks import nb201_file
    from tests.helpers import benchmark_files as bf

    pth = bf.write_nb201_pth(tmp_path / "NAS-Bench-201-v1_1-096897.pth")
    real_query = nb201_file.query

    def query(path, arch, hp="200"):
        stand_in = bf.NB201_ARCHS[zlib.crc32(arch.encode()) % len(bf.EVALUATED)]
        return {**real_query(path, stand_in, hp), "arch": arch}

    monkeypatch.setattr(nb201_file, "query", query)
    run = tmp_path / "b"
    code = run_train_py(
        monkeypatch, run, *NB201_DIGITS, "estimate.sample=10", "estimate.proxies=[params]",
        "estimate.figures=false", "retrain.C=4", "retrain.layers=1", f"estimate.truth={pth}",
        "estimate.predictor=gb", "estimate.predictor_train=30", "estimate.folds=3",
    )  # fmt: skip
    assert code == 0
    summary = read_summary(run)
    assert summary["correlations"]["truth_column"] == "cifar10_test_acc"
    assert summary["correlations"]["n_matched"] == 10
    pred = summary["predictor"]
    assert pred["train_archs"] == 30 and pred["cv_folds"] == 3
    assert math.isfinite(pred["cv_spearman"])
    with open(run / "predictions.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 10
