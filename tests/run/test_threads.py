"""The ``threads`` option (``nas/run/threads.py``): the ``auto`` rule on injected idle readings.

No timings: the measured effect of the choice is in experiments/bench/shared_cores.py.
"""

from __future__ import annotations

import pytest
import torch

from nas.run import threads

STAT_BEFORE = """cpu  200 0 100 1000 0 0 0 0 0 0
cpu0 100 0 50 500 0 0 0 0 0 0
cpu1 100 0 50 500 0 0 0 0 0 0
intr 12345
"""
# 100 ticks later: cpu0 idle all the time, cpu1 busy all the time (user).
STAT_AFTER_ONE_BUSY = """cpu  300 0 100 1100 0 0 0 0 0 0
cpu0 100 0 50 600 0 0 0 0 0 0
cpu1 200 0 50 500 0 0 0 0 0 0
"""
STAT_AFTER_IDLE = """cpu  200 0 100 1200 0 0 0 0 0 0
cpu0 100 0 50 598 2 0 0 0 0 0
cpu1 100 0 50 600 0 0 0 0 0 0
"""


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    saved = threads._before, threads._set_by_us, threads.last_choice
    threads._before = threads._set_by_us = None
    yield
    torch.set_num_threads(before)
    threads._before, threads._set_by_us, threads.last_choice = saved


def readings(*texts):
    it = iter(texts)
    return lambda: next(it)


def test_proc_stat_parsing_counts_iowait_idle_and_steal_busy():
    times = threads.read_cpu_times("cpu0 10 0 10 70 5 0 0 5\ncpu1 1 2 3 4\ncpu 1 1 1 1\n")
    assert times == {0: (75, 100), 1: (4, 10)}


@pytest.mark.parametrize(
    "after, idle", [(STAT_AFTER_ONE_BUSY, 1.0), (STAT_AFTER_IDLE, 2.0)], ids=["one-busy", "idle"]
)
def test_measure_idle_from_two_readings(after, idle):
    got, source = threads.measure_idle(
        [0, 1], window_s=0.3, read=readings(STAT_BEFORE, after), sleep=lambda s: None
    )
    assert got == pytest.approx(idle) and "/proc/stat" in source


def test_measure_idle_only_counts_allowed_cpus():
    got, _ = threads.measure_idle(
        [1], read=readings(STAT_BEFORE, STAT_AFTER_ONE_BUSY), sleep=lambda s: None
    )
    assert got == pytest.approx(0.0)


def test_measure_idle_falls_back_to_load_average(monkeypatch):
    def missing():
        raise OSError("no /proc/stat")

    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    got, source = threads.measure_idle([0, 1, 2, 3], read=missing, sleep=lambda s: None)
    assert got == pytest.approx(2.5) and source == "1-min load average"


@pytest.mark.parametrize(
    "idle, cpus, ceiling, expected",
    [
        (2.0, 2, 2, 2),  # idle 2-core machine: the fast path, torch's default
        (1.8, 2, 2, 2),  # short bursts of other work still count as free
        (1.0, 2, 2, 1),  # one core busy: one thread, not a team that waits for it
        (1.6, 2, 2, 1),
        (0.0, 2, 2, 1),  # both busy: still one thread
        (5.9, 8, 8, 6),
        (8.0, 8, 4, 4),  # never above the count in effect before (OMP_NUM_THREADS, ...)
        (None, 4, 4, 4),  # nothing measurable: torch's default
    ],
)
def test_auto_rule(idle, cpus, ceiling, expected):
    assert threads.threads_for(idle, cpus, ceiling) == expected


@pytest.mark.parametrize("value", ["auto", "AUTO", 3, "3", None, "null", 0])
def test_parse_accepts(value):
    assert threads.parse(value) in ("auto", 3, None)


@pytest.mark.parametrize("value", [-1, "two", 1.5, True])
def test_parse_rejects_naming_the_choices(value):
    with pytest.raises(ValueError, match="threads=.*auto"):
        threads.parse(value)


def test_choose_auto_sets_torch_threads_and_describes():
    torch.set_num_threads(2)
    choice = threads.choose("auto", measure=lambda cpus: (1.0, "test"), cpus=[0, 1])
    assert choice.threads == torch.get_num_threads() == 1
    assert threads.describe() == "1 (auto: 1.0 of 2 CPUs idle, test)"


def test_choose_auto_goes_back_up_to_the_earlier_count_in_one_process():
    torch.set_num_threads(2)
    threads.choose("auto", measure=lambda cpus: (0.9, "test"), cpus=[0, 1])
    assert torch.get_num_threads() == 1
    # a multirun's next job on a machine that is idle again
    threads.choose("auto", measure=lambda cpus: (2.0, "test"), cpus=[0, 1])
    assert torch.get_num_threads() == 2


def test_choose_auto_respects_a_lower_count_set_by_someone_else():
    torch.set_num_threads(1)  # e.g. tests/conftest.py or OMP_NUM_THREADS=1
    choice = threads.choose("auto", measure=lambda cpus: (2.0, "test"), cpus=[0, 1])
    assert choice.threads == torch.get_num_threads() == 1 and choice.ceiling == 1


def test_choose_fixed_and_null():
    torch.set_num_threads(1)
    assert threads.choose(2, cpus=[0, 1]).threads == torch.get_num_threads() == 2
    assert threads.choose(None, cpus=[0, 1]).threads == 2
    assert threads.describe() == "2 (torch's default)"


def test_choose_auto_does_not_sample_when_one_thread_is_the_most():
    def fail(cpus):
        raise AssertionError("sampled /proc/stat with nothing to choose")

    torch.set_num_threads(1)
    assert threads.choose("auto", measure=fail, cpus=[0, 1]).threads == 1
    torch.set_num_threads(2)
    threads._before = threads._set_by_us = None
    assert threads.choose("auto", measure=fail, cpus=[0]).threads == 1
    assert threads.describe() == "1 (auto: at most 1 allowed)"
