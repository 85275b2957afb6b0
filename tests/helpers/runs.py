"""``train.py`` run in this process (Hydra's main with a patched argv), and what a run wrote:
its summary, α and checkpoints, compared bitwise between two runs."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch

from nas.run.checkpointing import RunCheckpoint
from tests.helpers.paths import ROOT


def run_train_py(monkeypatch, run_dir: Path, *args: str) -> int:
    """``python train.py hydra.run.dir=<run_dir> <args>`` in this process; the exit status."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["train.py", f"hydra.run.dir={run_dir}", *args])
    import train

    try:
        train.main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def run_train(monkeypatch, run_dir: Path, *overrides: str, logger: str = "csv") -> int:
    """Runs ``python train.py experiment=smoke logger=<logger>`` with ``overrides`` in this
    process; returns the exit status."""
    return run_train_py(monkeypatch, run_dir, "experiment=smoke", f"logger={logger}", *overrides)


def run_train_unlogged(monkeypatch, run_dir: Path, *overrides: str) -> int:
    """:func:`run_train` with ``logger=none``: for runs whose checks read only the result files."""
    return run_train(monkeypatch, run_dir, *overrides, logger="none")


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def alphas(run_dir: Path) -> dict:
    return json.loads((run_dir / "alphas.json").read_text())


def weights(run_dir: Path, stage: str = "search") -> dict[str, torch.Tensor]:
    """The state dict of the stage's ``last.ckpt``."""
    ckpt = torch.load(
        run_dir / "checkpoints" / stage / "last.ckpt", map_location="cpu", weights_only=False
    )
    return ckpt["state_dict"]


def assert_same_run(a: Path, b: Path, stage: str = "search") -> None:
    """Bitwise the same α, genotype (search) and weights of the stage's last checkpoint."""
    if stage == "search":
        assert alphas(a) == alphas(b)
        assert (a / "genotype.json").read_text() == (b / "genotype.json").read_text()
    wa, wb = weights(a, stage), weights(b, stage)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def run_with_sigterm(monkeypatch, run_dir: Path, *overrides: str, at_step: int = 4) -> int:
    """Runs train.py and sends the process a real SIGTERM once ``at_step`` optimizer steps are done."""
    original = RunCheckpoint.on_train_batch_end

    def signal_then_check(self, trainer, *args):
        if trainer.global_step == at_step and not trainer.received_sigterm:
            os.kill(os.getpid(), signal.SIGTERM)
        original(self, trainer, *args)

    with monkeypatch.context() as m:
        m.setattr(RunCheckpoint, "on_train_batch_end", signal_then_check)
        return run_train(m, run_dir, *overrides)


def assert_discretize_agrees(tmp_path, monkeypatch, common: list[str]) -> None:
    """``stage=discretize`` of the search's ``<tmp_path>/s/alphas.json`` writes the search's
    genotype file again."""
    alphas_file = tmp_path / "s" / "alphas.json"
    assert (
        run_train_unlogged(
            monkeypatch, tmp_path / "d", "stage=discretize", f"alphas={alphas_file}", *common
        )
        == 0
    )
    assert (tmp_path / "d" / "genotype.json").read_text() == (
        tmp_path / "s" / "genotype.json"
    ).read_text()
