"""``python train.py --help`` is short and names every stage and group; ``--cfg job`` still
prints the whole composed config."""

from __future__ import annotations

import subprocess
import sys

from tests.test_train import ROOT

STAGES = ("pipeline", "search", "discretize", "retrain", "profile", "latency")


def train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_help_is_short_and_names_every_stage_and_group():
    proc = train("--help")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert 10 < len(lines) < 80
    assert "--cfg job" in proc.stdout
    for stage in STAGES:
        assert any(line.strip().startswith(f"{stage} ") for line in lines), stage
    groups = sorted(
        str(d.relative_to(ROOT / "conf"))
        for d in (ROOT / "conf").rglob("*")
        if d.is_dir()
        and any(d.glob("*.yaml"))
        and not d.relative_to(ROOT / "conf").parts[0] == "hydra"
    )
    assert "strategy" in groups and "scale/search" in groups
    for group in groups:  # each group with its options, e.g. "logger: csv, none, wandb"
        options = sorted(f.stem for f in (ROOT / "conf" / group).glob("*.yaml"))
        line = next(line for line in lines if line.startswith(f"{group}: "))
        assert all(o in line for o in options), (group, line)
    assert "Powered by Hydra" not in proc.stdout and "hydra:" not in proc.stdout


def test_cfg_job_prints_the_full_config():
    proc = train("--cfg", "job", "stage=search")
    assert proc.returncode == 0, proc.stderr
    assert "stage: search" in proc.stdout and "search_space:" in proc.stdout
    assert len(proc.stdout.splitlines()) > 80
