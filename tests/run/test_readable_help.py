"""``python train.py --help`` is short and names every stage and group; ``--cfg job`` still
prints the whole composed config."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from tests.helpers.paths import ROOT

STAGES = ("pipeline", "search", "discretize", "retrain", "profile", "latency")


def train(monkeypatch, capsys, *args: str) -> SimpleNamespace:
    """``python train.py <args>`` in this process (Hydra's --help and --cfg exit before any
    work), as the exit status and what it printed."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    import train

    capsys.readouterr()
    try:
        train.main()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def test_help_is_short_and_names_every_stage_and_group(monkeypatch, capsys):
    proc = train(monkeypatch, capsys, "--help")
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


def test_cfg_job_prints_the_full_config(monkeypatch, capsys):
    proc = train(monkeypatch, capsys, "--cfg", "job", "stage=search")
    assert proc.returncode == 0, proc.stderr
    assert "stage: search" in proc.stdout and "search_space:" in proc.stdout
    assert len(proc.stdout.splitlines()) > 80
