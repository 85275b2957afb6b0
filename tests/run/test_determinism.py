"""Same seed and config → same α and genotype on CPU, for one strategy of each sampler family;
and exact resume for a strategy whose sampler draws random numbers (Gumbel)."""

from __future__ import annotations

import json

import pytest

from tests.helpers.runs import assert_same_run, run_train, run_with_sigterm

FAMILIES = {
    "softmax": "darts",
    "gumbel": "gdas",
    "dirichlet": "drnas",
    "partial_channel": "pcdarts",
}
SEARCH = ["stage=search", "seed=7", "trainer.limit_train_batches=3", "trainer.max_epochs=2"]


# The default run keeps the deterministic family (16 s on 2 cores; the Gumbel sampler's own
# stream is checked by test_gumbel_sampler_resumes_exactly_after_sigterm); the sampling,
# Dirichlet and partial-channel families run with -m slow.
@pytest.mark.parametrize(
    "family",
    # softmax too since the crash tests compare resumed runs bitwise with uninterrupted ones
    # of the same seed (tests/run/test_crash_resume.py): 25 s of the default run's budget.
    [pytest.param(f, marks=pytest.mark.slow) for f in FAMILIES],
)
def test_same_seed_same_alphas_and_genotype(family, tmp_path, monkeypatch):
    strategy = FAMILIES[family]
    for name in ("a", "b"):
        assert run_train(monkeypatch, tmp_path / name, *SEARCH, f"strategy={strategy}") == 0
    a, b = (json.loads((tmp_path / n / "alphas.json").read_text()) for n in ("a", "b"))
    assert a == b
    ga, gb = ((tmp_path / n / "genotype.json").read_text() for n in ("a", "b"))
    assert ga == gb
    # A different seed gives a different search (the seed is really used).
    assert (
        run_train(
            monkeypatch, tmp_path / "c", *SEARCH[:1], "seed=8", *SEARCH[2:], f"strategy={strategy}"
        )
        == 0
    )
    assert json.loads((tmp_path / "c" / "alphas.json").read_text()) != a


@pytest.mark.slow  # scheduled resume: test_resume.py (fbnet) by default
def test_gumbel_sampler_resumes_exactly_after_sigterm(tmp_path, monkeypatch):
    """SIGTERM in epoch 1 (3 batches of 2 optimizer steps per epoch: step 8 ends its first
    batch), where GDAS' τ has left its initial value: Lightning skips the epoch-start hook on
    a mid-epoch restart, and the resumed run must still anneal τ as the uninterrupted one."""
    assert run_train(monkeypatch, tmp_path / "full", *SEARCH, "strategy=gdas") == 0
    split = run_with_sigterm(monkeypatch, tmp_path / "split", *SEARCH, "strategy=gdas", at_step=8)
    assert split == 3
    assert run_train(monkeypatch, tmp_path / "split", *SEARCH, "strategy=gdas", "resume=auto") == 0
    assert_same_run(tmp_path / "full", tmp_path / "split")
