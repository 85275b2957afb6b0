"""Sweeps: the objective ``train.py`` returns, Optuna over a strategy's hyperparameters, and the
submitit launchers (``hydra/launcher=local`` run for real, ``hydra/launcher=slurm`` composed down
to its sbatch script). The plugin tests skip where the ``sweep`` extra is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

import train
from tests.helpers.paths import ROOT

# Every job in about a second after the imports.
TINY = ["experiment=smoke", "data=synthetic", "logger=none", "stage=search", "threads=1"]
OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def compose_config(*overrides: str):
    GlobalHydra.instance().clear()  # an in-process train.main() may have left it set
    with initialize_config_dir(train.CONFIG_DIR, version_base="1.3", job_name="train"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def run_multirun(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python train.py -m`` in a fresh process (the launchers pickle and spawn jobs)."""
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "WANDB_MODE": "offline"}
    return subprocess.run(
        [*cmd, *TINY, *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def job_summaries(sweep_dir: Path) -> dict[int, dict]:
    return {
        int(d.name): json.loads((d / "summary.json").read_text())
        for d in sweep_dir.iterdir()
        if d.name.isdigit()
    }


@pytest.fixture
def hydra_job():
    """Sets HydraConfig as in a job of ``mode`` under the sweeper ``target``; restores it."""
    saved = HydraConfig.instance().cfg

    def set_job(mode: str, target: str):
        cfg = compose_config()
        with open_dict(cfg):
            cfg.hydra.mode = mode
            cfg.hydra.sweeper._target_ = target
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield set_job
    HydraConfig.instance().cfg = saved


def summary(**fields) -> dict:
    return {"stage": "x", "genotype": "G", "params": 10, "test_acc": None, **fields}


# -- the objective -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stage, expected",
    [("search", 0.5), ("retrain", 0.75), ("pipeline", 0.75), ("profile", None)],
)
def test_auto_objective_follows_the_stage(stage, expected):
    cfg = compose_config(f"stage={stage}")
    assert cfg.objective == "auto"
    fields = summary(search_val_acc=0.5, test_acc=0.75)
    assert train.objective(cfg, fields) == expected


def test_named_objective_and_non_numbers():
    cfg = compose_config("objective=params")
    assert train.objective(cfg, summary()) == 10.0
    cfg = compose_config("objective=genotype")
    assert train.objective(cfg, summary()) is None  # outside an optimizing sweep: nothing to say
    cfg = compose_config("objective=flag")
    assert train.objective(cfg, summary(flag=True)) is None  # a bool is no objective


def test_basic_multirun_returns_none_quietly(hydra_job):
    hydra_job("MULTIRUN", "hydra._internal.core_plugins.basic_sweeper.BasicSweeper")
    assert not train.optimizing_sweep()
    assert train.objective(compose_config("stage=profile"), summary()) is None


@pytest.mark.parametrize(
    "overrides, fields, words",
    [
        (["stage=search"], summary(search_val_acc=None), ["'search_val_acc'", "stage=search"]),
        (["stage=profile"], summary(), ["objective=auto", "stage=profile"]),
        (["stage=retrain", "objective=val_acc"], summary(), ["'val_acc'", "stage=retrain"]),
    ],
)
def test_missing_objective_under_an_optimizing_sweeper_is_an_error(
    hydra_job, overrides, fields, words
):
    hydra_job("MULTIRUN", OPTUNA)
    assert train.optimizing_sweep()
    with pytest.raises(ValueError) as err:
        train.objective(compose_config(*overrides), fields)
    for word in [*words, "params"]:  # names the field, the stage and the numeric fields
        assert word in str(err.value)


# -- Optuna ------------------------------------------------------------------------------------


def test_sweep_config_names_real_keys():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    for strategy in ("darts", "gdas"):
        cfg = compose_config("+sweep=darts_optuna", f"strategy={strategy}")
        sweeper = cfg.hydra.sweeper
        assert sweeper._target_ == OPTUNA
        assert sweeper.direction == "maximize" and sweeper.sampler.seed == 0
        assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
        assert cfg.stage.value == "search" and cfg.objective == "auto"
        for key in sweeper.params:  # a misspelt key would only fail in the first trial
            assert isinstance(OmegaConf.select(cfg, key), float), key


@pytest.mark.slow  # 14 s; the objective itself: test_train.py
def test_optuna_sweep_returns_the_summary_objective(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    proc = run_multirun(
        tmp_path, "+sweep=darts_optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1"
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = OmegaConf.load(tmp_path / "optimization_results.yaml")
    summaries = job_summaries(tmp_path)
    assert sorted(summaries) == [0, 1]
    values = {num: s["search_val_acc"] for num, s in summaries.items()}
    assert all(s["stage"] == "search" for s in summaries.values())
    assert results.best_value == max(values.values())
    # best_params are the overrides of a trial that reached best_value
    best = [num for num, v in values.items() if v == results.best_value]
    trial_params = []
    for num in best:
        overrides = OmegaConf.load(tmp_path / str(num) / ".hydra/overrides.yaml")
        params = dict(o.split("=", 1) for o in overrides)
        trial_params.append({k: float(params[k]) for k in results.best_params})
    assert dict(results.best_params) in trial_params


@pytest.mark.slow  # end to end of test_missing_objective_under_an_optimizing_sweeper_is_an_error
def test_optuna_on_a_stage_without_objective_names_it(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    proc = run_multirun(
        tmp_path,
        "+sweep=darts_optuna",
        "stage=profile",
        "genotype=darts_v2",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.n_jobs=1",
    )
    assert proc.returncode != 0
    assert "objective=auto has no field for stage=profile" in proc.stderr
    assert not (tmp_path / "optimization_results.yaml").exists()


# -- submitit ----------------------------------------------------------------------------------


@pytest.mark.slow  # 16 s: a process per job
def test_submitit_local_runs_each_job_in_its_process(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = run_multirun(
        tmp_path, "hydra/launcher=local", "hydra.launcher.timeout_min=5", "strategy=darts,gdas"
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summaries = job_summaries(tmp_path)
    assert {num: s["strategy"] for num, s in summaries.items()} == {0: "darts", 1: "gdas"}
    assert all(s["search_val_acc"] is not None for s in summaries.values())
    # submitit's per-job folders: its logs and pickled results
    assert len(list((tmp_path / ".submitit").glob("*/*_result.pkl"))) == 2
    hydra_cfg = OmegaConf.load(tmp_path / "0/.hydra/hydra.yaml").hydra
    assert hydra_cfg.launcher._target_.endswith("submitit_launcher.LocalLauncher")


def test_slurm_launcher_resolves_to_an_sbatch_script(tmp_path, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    submitit = pytest.importorskip("submitit")
    from hydra.utils import instantiate

    cfg = compose_config(
        "hydra/launcher=slurm",
        "+sweep=darts_optuna",
        f"hydra.sweep.dir={tmp_path}",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=1440",
        "+hydra.launcher.additional_parameters.mail_type=END",
        'hydra.launcher.setup=["source .venv/bin/activate"]',
        *TINY,
    )
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    # No SLURM here: pretend srun exists and catch the job array instead of submitting it.
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    submitted = {}

    def map_array(self, fn, *args):
        submitted.update(executor=self._executor, jobs=list(zip(*args)))
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)
    assert [job[0] for job in submitted["jobs"]] == [["seed=0"], ["seed=1"]]
    script = submitted["executor"]._make_submission_file_text("python -u job.py", "uid")
    for line in (
        "--time=1440",
        "--cpus-per-task=8",
        "--gpus-per-node=1",
        "--ntasks-per-node=1",
        "--nodes=1",
        "--mem=32GB",
        "--partition=gpu",
        "--job-name=train",
        f"--output={tmp_path}/.submitit/",
        "--mail-type=END",
    ):
        assert f"#SBATCH {line}" in script, line
    assert "# setup\nsource .venv/bin/activate\n\n# command\n" in script  # before srun
    assert submitted["executor"].parameters["array_parallelism"] == 16
