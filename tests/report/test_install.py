"""The project installed as a user installs it (a wheel, not an editable checkout) runs a
multirun, and collects it, from a directory outside the checkout: everything ``train.py -m``
needs at run time, its configs and its sweep collector included, lives in the package."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Top-level folders of a checkout that no build reads: environments, data, outputs, and the
# parts the wheel leaves out (copying less keeps the test fast).
NOT_BUILT = {".git", ".venv", ".whl", "build", "data", "outputs", "multirun", "runs", "wandb",
             "lightning_logs", "tests", "experiments"}  # fmt: skip
SWEEP = ["experiment=smoke", "data=synthetic", "logger=csv", "threads=1", "seed=0,1"]


def not_built(folder: str, names: list[str]) -> list[str]:
    """``shutil.copytree``'s filter: ``NOT_BUILT`` at the top, caches and build records anywhere."""
    top = Path(folder) == REPO
    return [
        n for n in names
        if (top and n in NOT_BUILT) or n in ("__pycache__", ".pytest_cache", ".ruff_cache")
        or n.endswith(".egg-info")
    ]  # fmt: skip


def run(cmd: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``cmd`` with no ``PYTHONPATH`` (nothing may reach the checkout but through the install)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def fresh_venv(root: Path) -> tuple[Path, Path]:
    """A venv that sees this environment's packages (torch & co) but not the checkout: its
    python and its site-packages.

    ``--system-site-packages`` gives the base interpreter's packages only; when the tests run in
    a venv (``.ci/run``), torch is in that venv, so a ``.pth`` lists its site-packages as plain
    paths. Their own ``.pth`` files (the checkout's editable install among them) are not run."""
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
    )
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    (purelib / "this_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python, purelib


def test_installed_multirun_collects_outside_the_checkout(tmp_path: Path) -> None:
    src, work = tmp_path / "src", tmp_path / "work"
    shutil.copytree(REPO, src, symlinks=True, ignore=not_built)
    work.mkdir()
    python, purelib = fresh_venv(tmp_path)
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", src], work)

    where = run([python, "-c", "import nas; print(nas.__file__)"], work).stdout.strip()
    assert Path(where).is_relative_to(purelib), f"nas resolves to {where}, not the install"
    configs = purelib / "nas" / "conf"
    assert (configs / "config.yaml").is_file() and not configs.is_symlink()

    run([python.parent / "oneshot-nas", "-m", *SWEEP, "hydra.sweep.dir=sweep"], work)
    sweep = work / "sweep"
    assert sorted(p.parent.name for p in sweep.glob("*/summary.json")) == ["0", "1"]
    hydra = (sweep / "0" / ".hydra" / "hydra.yaml").read_text()
    assert (
        f"path: {configs.resolve()}\n      schema: file\n      provider: main" in hydra
    )  # its configs
    assert "  job:\n    name: train\n" in hydra  # the job's name, as python train.py gives it
    # The automatic collect (nas.report.sweep_callback): the table of both seeds.
    assert "| 2 | 0, 1 |" in (sweep / "results.md").read_text()
    assert (sweep / "results.csv").is_file()
