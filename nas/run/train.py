"""The ``train.py`` command, inside the package: ``python train.py`` in a checkout,
``oneshot-nas`` (the console script) or ``python -m nas.run.train`` where the project is
installed. ``python train.py [stage=...] [group=option ...] [key=value ...]``.

Thin on purpose: compose the config, run the stage, write ``summary.json``. Stages, groups and
options: ``python train.py --help``; files and formats: README.md. The module is named ``train``
because Hydra names the job after it (``.hydra/hydra.yaml``'s ``job.name``).
"""

from __future__ import annotations

import os

# Before torch is imported (nas.run.schema imports it; nas/__init__.py and nas/run/__init__.py
# import nothing, so this module's top runs first): libgomp, torch's CPU thread pool, reads this
# once. A thread waiting at the end of a parallel op spins 1,000 times, then sleeps: a core
# shared with another job is not burnt by spinning (a search step 2-83 s -> 1.2-2.5 s with a
# busy loop on one of 2 cores, experiments/bench/shared_cores.py; nas/run/threads.py), and the idle
# path keeps its speed (OMP_WAIT_POLICY=PASSIVE, never spinning, made an idle 2-epoch search
# 43.4 s instead of 23.0 s). Set it (or OMP_WAIT_POLICY) to override.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

import json
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from nas.run.schema import register_configs

register_configs()

# Errors caused by the user's input: reported as one paragraph, exit status 2, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, TypeError, KeyError)
# The one exit status of bad input (argparse's convention), whichever check finds it: Hydra's
# at compose time or the project's. A crash (a bug: a traceback) exits 1.
BAD_INPUT = 2
# Set when the task function starts: Hydra exits 1 both on a compose error (before it) and on
# an exception inside the run; only the first is bad input.
_task_started = False


# The package's configs: in a checkout ``nas/conf`` is a link to the top-level ``conf/``; an
# installed wheel holds a copy of it (pyproject.toml's package data).
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# `objective: auto`: the summary.json field a sweeper optimises, per stage (none for the others).
AUTO_OBJECTIVE = {"search": "search_val_acc", "retrain": "test_acc", "pipeline": "test_acc"}


def optimizing_sweep() -> bool:
    """Whether this run is a job of a sweeper that uses the return value (Optuna, Nevergrad,
    Ax: any but Hydra's basic sweeper)."""
    if not HydraConfig.initialized():
        return False
    hydra_cfg = HydraConfig.get()
    target = str(hydra_cfg.sweeper.get("_target_", ""))
    return hydra_cfg.mode == RunMode.MULTIRUN and not target.endswith(".BasicSweeper")


def objective(cfg: DictConfig, summary: dict) -> float | None:
    """The value ``main`` returns: the ``summary.json`` field named by ``cfg.objective``.

    ``auto`` takes the search's supernet validation accuracy for ``stage=search`` and the
    test accuracy for ``retrain`` and ``pipeline``; other stages have none.

    Raises:
        ValueError: in the job of an optimizing sweeper, when there is no numeric value to
            return (a sweeper would fail on ``None`` without saying why).
    """
    stage = cfg.stage.value
    name = AUTO_OBJECTIVE.get(stage) if cfg.objective == "auto" else cfg.objective
    value = summary.get(name) if name else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not optimizing_sweep():
        return None
    numeric = sorted(
        k for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    )
    if name is None:
        problem = f"objective=auto has no field for stage={stage}"
    elif name not in summary:
        problem = f"summary.json of stage={stage} has no field {name!r} (objective={cfg.objective})"
    else:
        problem = (
            f"summary.json field {name!r} of stage={stage} is {value!r}, not a number "
            f"(objective={cfg.objective})"
        )
    raise ValueError(
        f"{problem}: the sweeper has no value to optimise. Set objective=<a numeric field: "
        f"{', '.join(numeric)}> (auto: search_val_acc for stage=search, test_acc for retrain "
        "and pipeline)."
    )


def main() -> None:
    """``python train.py``: Hydra's entry point, with its compose errors (an unknown group
    option, bad override syntax, a wrongly typed value: Hydra exits 1) exiting ``BAD_INPUT``."""
    global _task_started
    _task_started = False
    try:
        task()
    except SystemExit as exit_:
        if exit_.code == 1 and not _task_started:
            sys.exit(BAD_INPUT)
        raise


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def task(cfg: DictConfig) -> float | None:
    global _task_started
    _task_started = True
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from nas.run import stages
    from nas.run.checkpointing import preempted_message
    from nas.run.guards import NonFiniteError, check_output_dir
    from nas.run.summary import write_summary

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    start, started = time.perf_counter(), time.time()
    try:
        check_output_dir(run_dir)
        fields = stages.run(cfg, run_dir)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(BAD_INPUT)
    except NonFiniteError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(4)
    except SIGTERMException:
        print(preempted_message(run_dir, started), file=sys.stderr, flush=True)
        sys.exit(3)
    path = write_summary(run_dir, cfg, fields, time.perf_counter() - start)
    print("\n" + "=" * 72)
    if fields.get("genotype"):
        print(f"genotype: {fields['genotype']}")
    if fields.get("test_acc") is not None:
        print(f"test accuracy: {fields['test_acc']:.4f}")
    if fields.get("test_bits_per_byte") is not None:  # language modelling (data=text)
        print(f"test loss: {fields['test_loss']:.4f} nats/token, "
              f"{fields['test_bits_per_byte']:.4f} bits/byte, "
              f"perplexity {fields['test_perplexity']:.3f}")  # fmt: skip
    if fields.get("params") is not None:
        print(f"params: {fields['params']:,} (without auxiliary head), MACs: {fields['macs']:,}")
    print(f"results: {run_dir} (summary.json, config in .hydra/)")
    print("=" * 72)
    return objective(cfg, json.loads(path.read_text()))


if __name__ == "__main__":
    main()
