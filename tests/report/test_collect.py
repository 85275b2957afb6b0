"""``python -m nas.report.collect``: tested on a real tiny multirun and on hand-written jobs."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.core.genotype import load_genotype
from nas.report.collect import main

REPO = Path(__file__).resolve().parents[2]
SWEEP = ["experiment=smoke", "data=synthetic", "logger=none", "threads=1"]


@pytest.fixture(scope="module")
def multirun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real 4-job multirun (DARTS and GDAS, seeds 0 and 1), every stage in seconds."""
    sweep = tmp_path_factory.mktemp("multirun")
    cmd = [sys.executable, "train.py", "-m", *SWEEP, "strategy=darts,gdas", "seed=0,1"]
    proc = subprocess.run(
        [*cmd, f"hydra.sweep.dir={sweep}"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return sweep


def jobs_by_strategy(sweep: Path) -> dict[str, list[Path]]:
    """The job dirs of a sweep, by the strategy= override in their .hydra/overrides.yaml."""
    out: dict[str, list[Path]] = {}
    for overrides in sorted(sweep.glob("*/.hydra/overrides.yaml")):
        strategy = next(line for line in overrides.read_text().split() if "strategy=" in line)
        out.setdefault(strategy, []).append(overrides.parent.parent)
    return out


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    return {row["config"]: row for row in read_csv_rows(path)}


def test_real_multirun(multirun: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "nas.report.collect", str(multirun), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| strategy=darts | 2 | 0, 1 |" in proc.stdout and "results.csv" in proc.stdout
    rows = read_csv(out / "results.csv")
    jobs = jobs_by_strategy(multirun)
    assert sorted(rows) == sorted(jobs) == ["strategy=darts", "strategy=gdas"]
    scales = {"test_acc_pct": ("test_acc", 100), "params_M": ("params", 1e-6)}
    scales |= {"macs_M": ("macs", 1e-6), "search_val_acc_pct": ("search_val_acc", 100)}
    scales |= {"search_time_min": ("search_wall_time_s", 1 / 60)}
    for label, dirs in jobs.items():
        row = rows[label]
        assert (row["n"], row["seeds"]) == ("2", "0 1")
        summaries = [json.loads((d / "summary.json").read_text()) for d in dirs]
        for column, (key, scale) in scales.items():
            values = [s[key] * scale for s in summaries]
            assert float(row[f"{column}_mean"]) == pytest.approx(statistics.fmean(values))
            assert float(row[f"{column}_std"]) == pytest.approx(statistics.stdev(values), abs=1e-9)
        md = (out / "results.md").read_text()
        job_rows = {r["job_dir"]: r for r in read_csv_rows(out / "results_jobs.csv")}
        section = md.split(f"### {label}\n")[1].split("###")[0]
        for d, s in zip(dirs, summaries):
            genotype = str(load_genotype(d / "genotype.json"))
            assert f"- seed {s['seed']} (`{d}`): `{genotype}`" in section
            job_row = job_rows[str(d)]
            assert (job_row["config"], job_row["genotype"]) == (label, genotype)
            assert float(job_row["skip_connect_ops"]) == genotype.count("'skip_connect'")
    assert "Incomplete jobs (not averaged): none." in md
    pixels = np.asarray(Image.open(out / "accuracy_vs_params.png").convert("L"), dtype=float)
    assert pixels.shape[0] > 200 and pixels.std() > 10
    # The multirun collected itself when its last job ended (nas/report/sweep_callback.py),
    # into the sweep directory, and, its jobs having no W&B, sent nothing to W&B.
    for name in ("results.csv", "results_jobs.csv"):
        assert (multirun / name).read_text() == (out / name).read_text(), name
    assert (multirun / "accuracy_vs_params.png").is_file()
    assert not (multirun / "wandb").exists()


def test_bad_collect_setting_fails_before_the_sweep_runs() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import train
    from nas.report.collect import CollectError
    from nas.report.sweep_callback import CollectSweep

    GlobalHydra.instance().clear()  # an in-process train.main() may have left it set
    with initialize_config_dir(train.CONFIG_DIR, version_base="1.3", job_name="train"):
        cfg = compose("config", overrides=["collect.cost=flops"], return_hydra_config=True)
    with pytest.raises(
        CollectError,
        match="cost must be one of macs, params, latency_ms, latency_ms_table, got 'flops'",
    ):
        CollectSweep().on_multirun_start(cfg)
    with initialize_config_dir(train.CONFIG_DIR, version_base="1.3", job_name="train"):
        cfg = compose("config", overrides=["+sweep=latency_pareto"], return_hydra_config=True)
    assert cfg.collect.cost == "latency_ms"
    assert cfg.hydra.callbacks.collect._target_ == "nas.report.sweep_callback.CollectSweep"


def test_broken_and_unfinished_jobs_are_listed_not_averaged(
    multirun: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(multirun, sweep, ignore=shutil.ignore_patterns("checkpoints"))
    broken = sweep / "nested" / "9"
    shutil.copytree(sweep / "0", broken)
    (broken / "summary.json").write_text('{"test_acc": 0.99, "params": ')
    unfinished = sweep / "10"
    shutil.copytree(sweep / "0" / ".hydra", unfinished / ".hydra")
    assert main([str(sweep)]) == 0
    assert f"warning: {broken}: corrupt summary.json" in capsys.readouterr().err
    rows = read_csv(sweep / "results.csv")
    assert {r["n"] for r in rows.values()} == {"2"}
    darts = jobs_by_strategy(multirun)["strategy=darts"]
    accs = [json.loads((d / "summary.json").read_text())["test_acc"] * 100 for d in darts]
    assert float(rows["strategy=darts"]["test_acc_pct_mean"]) == pytest.approx(
        statistics.fmean(accs)
    )
    incomplete = (sweep / "results.md").read_text().split("Incomplete jobs (not averaged): ")[1]
    assert f"`{broken}` (corrupt summary.json" in incomplete
    assert f"`{unfinished}` (no summary.json" in incomplete


def fake_job(root: Path, name: str, overrides: list[str], **summary: object) -> Path:
    """A job directory as train.py writes it, without running anything."""
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / "summary.json").write_text(json.dumps(summary))
    return job


# 4 + 4 skip connections in the DARTS text; 2 in the NAS-Bench-201 string.
DARTS = (
    "Genotype(normal=" + str([("skip_connect", 0), ("sep_conv_3x3", 1)] * 4) + ", normal_concat="
    "[2, 3, 4, 5], reduce=" + str([("max_pool_3x3", 0), ("skip_connect", 1)] * 4) + ", "
    "reduce_concat=[2, 3, 4, 5])"
)
NB201 = "|skip_connect~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|"


def test_grouping_and_mean_std_on_fake_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["data=synthetic", "hydra.run.dir=x", "hydra/launcher=basic"]
    for seed, acc in enumerate([0.90, 0.92, 0.97]):
        overrides = [*common, "strategy=darts", f"seed={seed}"]
        metrics = {"test_acc": acc, "params": 2_000_000 + seed * 1000, "macs": 3e8}
        fake_job(
            tmp_path,
            f"a{seed}",
            overrides,
            seed=seed,
            **metrics,
            search_wall_time_s=120.0,
            genotype=DARTS,
        )
    # A search-only NAS-Bench-201 job: no test accuracy, params or MACs.
    fake_job(
        tmp_path,
        "sub/b0",
        [*common, "strategy=nb", "seed=5"],
        seed=5,
        test_acc=None,
        search_val_acc=0.5,
        genotype=NB201,
        stage="search",
    )
    assert main([str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    table = capsys.readouterr().out
    a = next(line for line in table.splitlines() if line.startswith("| strategy=darts |"))
    assert a.split(" | ")[1:4] == ["3", "0, 1, 2", f"93.00 ± {statistics.stdev([90, 92, 97]):.2f}"]
    assert "| 2.001 ± 0.001 | 300.0 ± 0.0 | 2.00 ± 0.00 | 8.0 ± 0.0 |" in a
    b = next(line for line in table.splitlines() if line.startswith("| strategy=nb |"))
    assert b == "| strategy=nb | 1 | 5 | – | 50.00 ± – | – | – | – | 2.0 ± – |"
    rows = read_csv(tmp_path / "o" / "results.csv")
    assert (
        rows["strategy=nb"]["test_acc_pct_mean"] == ""
        and rows["strategy=nb"]["test_acc_pct_n"] == "0"
    )
    assert float(rows["strategy=darts"]["params_M_std"]) == pytest.approx(0.001)
    assert (
        "Overrides shared by every job: `data=synthetic`"
        in (tmp_path / "o" / "results.md").read_text()
    )


def test_robustness_columns_appear_only_when_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """H(α) and the Hessian eigenvalue are columns when some job reports them; a table of
    jobs that report neither keeps its usual columns."""
    for seed, (h, lam) in enumerate([(1.5, 0.2), (1.7, 0.4)]):
        fake_job(
            tmp_path / "r",
            f"j{seed}",
            ["strategy=darts", f"seed={seed}"],
            seed=seed,
            search_val_acc=0.5,
            genotype=NB201,
            alpha_entropy=h,
            hessian_eigenvalue=lam,
        )
    assert main([str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| configuration"))
    row = next(line for line in lines if line.startswith("| strategy=darts"))
    assert header.endswith("| H(α) (nats) | λmax(∇²α L_val) |")
    assert row.endswith(f"| 1.600 ± {statistics.stdev([1.5, 1.7]):.3f} | 0.300 ± 0.141 |")
    csv_row = read_csv(tmp_path / "o" / "results.csv")["strategy=darts"]
    assert float(csv_row["hessian_eigenvalue_mean"]) == pytest.approx(0.3)
    fake_job(tmp_path / "plain", "j0", ["seed=0"], seed=0, search_val_acc=0.5, genotype=NB201)
    assert main([str(tmp_path / "plain"), "--out", str(tmp_path / "p")]) == 0
    assert "| H(α) (nats)" not in (tmp_path / "p" / "results.md").read_text()


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "summary.json" in err and "\n" not in err.strip()
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# (penalty scale, [(test_acc, macs, latency_ms) per seed]): 0.3 is dominated by 0.1 (costlier
# and less accurate), 1.0 and 3.0 are equal (both on the front), 10 is the cheapest.
PENALTY_SWEEP = {
    "0": [(0.95, 300e6, 9.0), (0.97, 320e6, 9.4)],
    "0.1": [(0.95, 200e6, 7.0), (0.95, 210e6, 7.2)],
    "0.3": [(0.93, 250e6, 8.0), (0.94, 260e6, 8.2)],
    "1.0": [(0.90, 100e6, 4.0), (0.90, 100e6, 4.0)],
    "3.0": [(0.90, 100e6, 4.0)],
    "10": [(0.80, 40e6, 2.0), (0.82, 44e6, 2.1)],
}


def penalty_sweep(root: Path) -> Path:
    for scale, seeds in PENALTY_SWEEP.items():
        for seed, (acc, macs, latency) in enumerate(seeds):
            fake_job(
                root,
                f"{scale}_{seed}",
                [f"strategy.regularizers.0.scale={scale}", f"seed={seed}"],
                seed=seed,
                test_acc=acc,
                macs=macs,
                params=macs / 100,
                latency_ms=latency,
                genotype=DARTS,
            )
    return root


def test_pareto_front_is_exactly_the_non_dominated_configurations() -> None:
    from nas.report.collect import ParetoPoint, pareto_front

    points = [
        ParetoPoint(
            label,
            statistics.fmean(c for _, c, _ in s),
            None,
            statistics.fmean(a for a, _, _ in s),
            None,
            len(s),
        )  # fmt: skip
        for label, s in PENALTY_SWEEP.items()
    ]
    brute = [
        p.label
        for p in points
        if not any(
            (q.cost, -q.acc) != (p.cost, -p.acc) and q.cost <= p.cost and q.acc >= p.acc
            for q in points
        )
    ]
    front = [p.label for p in pareto_front(points)]
    assert front == ["10", "1.0", "3.0", "0.1", "0"] and sorted(front) == sorted(brute)
    assert pareto_front([]) == [] and [p.label for p in pareto_front(points[:1])] == ["0"]


@pytest.mark.parametrize("cost", ["macs", "latency_ms"])
def test_pareto_figure_and_section(tmp_path: Path, cost: str) -> None:
    sweep = penalty_sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    args = [str(sweep), "--out", str(out)] + ([] if cost == "macs" else ["--cost", cost])
    assert main(args) == 0
    pixels = np.asarray(Image.open(out / f"pareto_{cost}.png").convert("L"), dtype=float)
    assert pixels.shape[0] > 200 and pixels.std() > 10
    section = (out / "results.md").read_text().split("## Pareto front: ")[1]
    rows = [line.split(" | ")[0][2:] for line in section.splitlines() if line.startswith("| s")]
    assert rows == [f"strategy.regularizers.0.scale={s}" for s in ("10", "1.0", "3.0", "0.1", "0")]
    assert "5 of 6 configurations are non-dominated" in section
    # Means ± std over seeds in the table's units (MACs in M; latency in ms).
    cost_cell = "42.00 ± 2.83" if cost == "macs" else "2.05 ± 0.07"
    assert f"scale=10 | 2 | {cost_cell} | 81.00 ± 1.41 |" in section
    one_seed = "100.0 ± –" if cost == "macs" else "4.00 ± –"
    assert f"scale=3.0 | 1 | {one_seed} | 90.00 ± – |" in section
    if cost == "latency_ms":  # the latency column appears in the main table too
        assert "| latency (ms) |" in (out / "results.md").read_text().split("## ")[0]


def test_no_pareto_figure_without_a_cost(tmp_path: Path) -> None:
    fake_job(tmp_path / "s", "j0", ["seed=0"], seed=0, search_val_acc=0.5, genotype=NB201)
    assert main([str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--cost", "latency_ms"]) == 0
    assert not (tmp_path / "o" / "pareto_latency_ms.png").exists()
    assert "Pareto" not in (tmp_path / "o" / "results.md").read_text()


def test_sweep_logged_to_wandb_gets_a_collect_run(tmp_path: Path) -> None:
    """``--wandb auto`` follows the jobs' logger: offline jobs give an offline collect run
    with the figures as images, the front as a table and chart, and the files as an artifact."""
    from tests.helpers.wandb_records import read_run

    sweep = penalty_sweep(tmp_path / "sweep")
    for config in sweep.glob("*/.hydra"):
        (config / "config.yaml").write_text(
            "logger:\n  name: wandb\n  project: pareto-test\n  mode: offline\n  tags: [sweep]\n"
        )
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out), "--cost", "latency_ms"]) == 0
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    run = read_run(run_dir)
    assert run["run"]["job_type"] == "collect"
    history = run["history"]
    for figure in ("pareto_latency_ms", "accuracy_vs_params"):
        assert history[f"figures/{figure}/_type"] == ["image-file"], figure
    assert history["pareto/latency_ms/points/_type"] == ["table-file"]
    assert history["results/_type"] == ["table-file"]
    table = json.loads(next(run_dir.rglob("points_*.table.json")).read_text())
    on_front = {row[0].split("=")[1]: row[-1] for row in table["data"]}
    assert on_front == {"0": True, "0.1": True, "0.3": False, "1.0": True, "3.0": True, "10": True}
    assert run["summary"]["pareto/latency_ms/front_size"] == 5
    assert run["summary"]["jobs"] == 11
    (artifact,) = [a for a in run["artifacts"] if a["type"] == "results"]
    assert {"results.md", "results.csv", "pareto_latency_ms.png"} <= set(artifact["files"])
    assert len(run["config"]["jobs"]) == 11
    # The same sweep without W&B in its jobs: nothing is sent anywhere.
    assert main([str(sweep), "--out", str(tmp_path / "o2"), "--wandb", "none"]) == 0
    assert not (tmp_path / "o2" / "wandb").exists()


def test_a_failing_wandb_log_keeps_the_files_and_says_so(tmp_path, monkeypatch, capsys):
    def no_key(*args, **kwargs):
        raise RuntimeError("api_key not configured (no-tty)")

    monkeypatch.setattr("nas.report.collect_wandb.log_collection", no_key)
    sweep = penalty_sweep(tmp_path / "sweep")
    assert main([str(sweep), "--out", str(tmp_path / "o"), "--wandb", "online"]) == 2
    err = capsys.readouterr().err
    assert "logging them to W&B (online) failed: RuntimeError: api_key" in err
    assert "wandb login" in err and str(tmp_path / "o" / "results.md") in err
    assert (tmp_path / "o" / "results.md").is_file()


def test_one_colour_per_configuration_in_every_figure(tmp_path: Path, monkeypatch) -> None:
    """accuracy_vs_params.png and pareto_macs.png draw each configuration in the same colour
    and marker, although the Pareto figure orders its points by cost."""
    from matplotlib.axes import Axes

    from nas.report.collect import config_styles

    drawn: list[tuple[str, str, str]] = []
    errorbar = Axes.errorbar

    def recording(self, *args, **kwargs):
        label = kwargs["label"].split(" (n=")[0]
        drawn.append((label, kwargs["color"], kwargs["marker"]))
        return errorbar(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "errorbar", recording)
    sweep = penalty_sweep(tmp_path / "sweep")
    assert main([str(sweep), "--out", str(tmp_path / "out"), "--wandb", "none"]) == 0
    labels = [f"strategy.regularizers.0.scale={s}" for s in PENALTY_SWEEP]
    assert len(drawn) == 2 * len(labels)  # every configuration once in each figure
    per_label: dict[str, set[tuple[str, str]]] = {}
    for label, colour, marker in drawn:
        per_label.setdefault(label, set()).add((colour, marker))
    assert sorted(per_label) == sorted(labels)
    assert all(len(styles) == 1 for styles in per_label.values()), per_label
    assert len({next(iter(s)) for s in per_label.values()}) == len(labels)  # all distinct
    # The Pareto figure's cost order differs from the configurations' order (the old bug).
    accuracy_order = [label for label, _, _ in drawn[: len(labels)]]
    pareto_order = [label for label, _, _ in drawn[len(labels) :]]
    assert accuracy_order != pareto_order
    styles = config_styles(reversed(labels))  # by label, whatever order they come in
    assert {label: (s["color"], s["marker"]) for label, s in styles.items()} == {
        label: next(iter(s)) for label, s in per_label.items()
    }
