"""oneshot-nas entry point: ``python train.py [stage=...] [group=option ...] [key=value ...]``.

Thin on purpose: compose the config, run the stage, write ``summary.json``. Stages, groups and
options: ``python train.py --help``; files and formats: README.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.config import register_configs

register_configs()

# Errors caused by the user's input: reported as one paragraph, exit status 2, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, TypeError, KeyError)


CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from nas import stages
    from nas.guards import NonFiniteError, check_output_dir
    from nas.summary import write_summary

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    start = time.perf_counter()
    try:
        check_output_dir(run_dir)
        fields = stages.run(cfg, run_dir)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except NonFiniteError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(4)
    except SIGTERMException:
        print(
            f"preempted (SIGTERM): state saved under {run_dir / 'checkpoints'}; continue with "
            f"python train.py ... hydra.run.dir={run_dir} resume=auto",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(3)
    path = write_summary(run_dir, cfg, fields, time.perf_counter() - start)
    print("\n" + "=" * 72)
    if fields.get("genotype"):
        print(f"genotype: {fields['genotype']}")
    if fields.get("test_acc") is not None:
        print(f"test accuracy: {fields['test_acc']:.4f}")
    if fields.get("params") is not None:
        print(f"params: {fields['params']:,} (without auxiliary head), MACs: {fields['macs']:,}")
    print(f"results: {run_dir} (summary.json, config in .hydra/)")
    print("=" * 72)
    del path


if __name__ == "__main__":
    main()
