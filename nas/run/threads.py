"""How many torch CPU threads a run uses: the ``threads`` option (``auto`` by default).

Why. torch runs each CPU op on an OpenMP team of ``torch.get_num_threads()`` threads (default:
one per CPU the process may run on) and every parallel op ends at a barrier that waits for the
team's slowest thread. When another process keeps one of the cores busy, the thread on that core
gets only its share of it, a time slice at a time, and each of the thousands of small ops of a
search step waits for it. libgomp (torch's OpenMP) makes it much worse by default: a thread that
reaches the barrier first spins (300,000 iterations) before it sleeps, burning the shared core's
time that the late thread needs. The issue: on a 2-core VM the default job's search epoch took
164.8 s at 2 threads with a busy core instead of 13.2 s at ``threads=1``.

Measured (``experiments/bench/shared_cores.py``, seconds per search step of the default job;
AMD EPYC, 2 CPUs, torch 2.13.0+cpu, 2026-12-07; four other jobs used ~1.5 of the 2 CPUs
throughout, so no condition was idle; medians of 8- or 12-step runs, 3 where slow):

    other jobs only (1-1.7 CPUs)  2 threads: 9.1 / 89.0 / 24.4 / 5.08 / 2.49   2 + ACTIVE: 16.3
                                  2 + PASSIVE: 2.11 / 3.69 / 1.93   2 + GOMP_SPINCOUNT=1000: 2.22 / 2.48
                                  1 thread: 1.88 / 2.08 / 1.49   auto (took 1): 1.84 / 3.96 / 1.86
    + busy loop on CPU 1          2 threads: 83.4 / 21.6 / 2.04
                                  2 + PASSIVE: 1.12 / 1.99 / 0.87 / 1.31 / 1.73
                                  1 thread: 2.61 / 0.60 / 1.63 / 1.58   auto (took 1): 2.43 / 0.63 / 1.45 / 1.72

So both fewer threads and not spinning fix it: ``train.py`` sets ``GOMP_SPINCOUNT=1000`` (PASSIVE,
never spinning, doubled an idle search's time: 43.4 vs 23.0 s for 2 epochs of the default job)
before torch is imported (unless the variable is set), which bounds the damage when a core gets
busy after the start, and ``threads: auto`` picks the thread count at the start.

What. ``threads: auto`` looks at the CPUs this process may run on (``os.sched_getaffinity``) and
how idle they are over a short window at the start of the run (``/proc/stat``; elsewhere the
1-minute load average), and takes ``floor(idle CPUs + 0.25)`` threads, at least 1 and at most the
count in effect before (torch's default, ``OMP_NUM_THREADS``, or an embedding program's
``torch.set_num_threads``, e.g. ``tests/conftest.py``): on an idle machine torch's default, on a
2-core machine with one busy core 1. It is chosen once, before the banner (``cpu (N threads)``);
a core that gets busy later is not noticed (the short spin limits the cost then). ``threads: N`` (an
integer >= 1) forces N; ``threads: null`` (or 0) leaves torch's default.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# A CPU fraction counts as free from this much idle upwards: floor(idle + SLACK). With 2 CPUs,
# 1.75 idle CPUs (short bursts of other work) still gives 2 threads, 1.7 gives 1. One thread
# too few costs at most the parallel speed-up (at most 2x on 2 cores); one too many cost 12x in
# the issue (and up to 40x in the bench without PASSIVE), hence the lean towards fewer.
SLACK = 0.25
WINDOW_S = 0.3  # the idle-time sample; /proc/stat counts in 10 ms ticks

# The thread count in effect before the first ``auto`` choice of this process, and the count
# that choice set: a later choice (a multirun's next job) may go back up to the former, unless
# someone else changed the count in between.
_before: int | None = None
_set_by_us: int | None = None


@dataclass
class Choice:
    """The outcome of :func:`choose`: the thread count and why."""

    threads: int
    setting: str  # "auto", "N", "null"
    cpus: int  # CPUs this process may run on
    idle: float | None  # idle CPUs measured (auto)
    source: str  # where the idle figure came from (auto)
    ceiling: int  # the most threads auto would take

    def describe(self) -> str:
        if self.setting == "auto" and self.idle is not None:
            return f"{self.threads} (auto: {self.idle:.1f} of {self.cpus} CPUs idle, {self.source})"
        if self.setting == "auto":
            return f"{self.threads} (auto: at most {min(self.cpus, self.ceiling)} allowed)"
        if self.setting == "null":
            return f"{self.threads} (torch's default)"
        return f"{self.threads} (threads={self.setting})"


last_choice: Choice | None = None


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask; all of them where unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def read_cpu_times(text: str) -> dict[int, tuple[int, int]]:
    """``/proc/stat`` text -> {cpu: (idle ticks, total ticks)}; idle includes iowait, steal
    (time the hypervisor gave to someone else) counts as busy."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        if not name[3:].isdigit():
            continue
        ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
        ticks += [0] * (8 - len(ticks))
        out[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return out


def idle_between(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpus: Iterable[int]
) -> float | None:
    """Idle CPUs (a sum of per-CPU idle fractions) among ``cpus`` between two readings."""
    total = 0.0
    seen = False
    for cpu in cpus:
        if cpu not in before or cpu not in after:
            continue
        idle = after[cpu][0] - before[cpu][0]
        ticks = after[cpu][1] - before[cpu][1]
        if ticks <= 0:
            continue
        total += min(max(idle / ticks, 0.0), 1.0)
        seen = True
    return total if seen else None


def measure_idle(
    cpus: list[int],
    window_s: float = WINDOW_S,
    read: Callable[[], str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[float | None, str]:
    """Idle CPUs among ``cpus`` over ``window_s`` seconds, and where the figure came from."""
    read = read or _read_proc_stat
    try:
        before = read_cpu_times(read())
        sleep(window_s)
        after = read_cpu_times(read())
        idle = idle_between(before, after, cpus)
        if idle is not None:
            return idle, f"/proc/stat over {window_s:g} s"
    except OSError:
        pass
    try:  # no /proc/stat (macOS): the load average, which counts runnable tasks machine-wide
        return max(0.0, len(cpus) - os.getloadavg()[0]), "1-min load average"
    except OSError:
        return None, "unknown"


def _read_proc_stat() -> str:
    with open("/proc/stat") as f:
        return f.read()


def threads_for(idle: float | None, cpus: int, ceiling: int) -> int:
    """The ``auto`` rule: ``floor(idle + SLACK)`` threads, within [1, min(cpus, ceiling)]."""
    top = max(1, min(cpus, ceiling))
    if idle is None:
        return top
    return max(1, min(top, math.floor(idle + SLACK)))


def parse(setting) -> str | int | None:
    """The config value: ``auto``, an integer >= 1, or None (torch's default)."""
    if setting is None:
        return None
    if isinstance(setting, str):
        s = setting.strip().lower()
        if s == "auto":
            return "auto"
        if s in ("null", "none", ""):
            return None
        if s.isdigit():
            setting = int(s)
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 0:
        return setting or None  # 0: torch's default, as before threads=auto existed
    raise ValueError(
        f"Unknown threads={setting!r}. Valid choices are: auto (as many threads as CPUs are idle "
        "at the start, see nas/run/threads.py), an integer >= 1, or null / 0 (torch's default)."
    )


def choose(
    setting,
    *,
    measure: Callable[[list[int]], tuple[float | None, str]] = measure_idle,
    cpus: list[int] | None = None,
) -> Choice:
    """Applies ``threads`` (``torch.set_num_threads``) and returns the :class:`Choice`."""
    import torch

    global _before, _set_by_us, last_choice
    value = parse(setting)
    cpus = allowed_cpus() if cpus is None else cpus
    current = torch.get_num_threads()
    if _set_by_us is None or current != _set_by_us:
        _before = current  # torch's default, OMP_NUM_THREADS or someone's set_num_threads
    ceiling = _before
    if value is None:
        choice = Choice(current, "null", len(cpus), None, "", ceiling)
    elif value == "auto" and min(len(cpus), ceiling) <= 1:  # nothing to choose: no sample
        choice = Choice(1, "auto", len(cpus), None, "", ceiling)
    elif value == "auto":
        idle, source = measure(cpus)
        n = threads_for(idle, len(cpus), ceiling)
        choice = Choice(n, "auto", len(cpus), idle, source, ceiling)
    else:
        choice = Choice(value, str(value), len(cpus), None, "", ceiling)
    if choice.threads != current:
        torch.set_num_threads(choice.threads)
    if value == "auto":
        _set_by_us = choice.threads
    last_choice = choice
    return choice


def describe() -> str:
    """The last choice in words, for the banner: ``1 (auto: 1.0 of 2 CPUs idle, ...)``."""
    if last_choice is None:
        import torch

        return str(torch.get_num_threads())
    return last_choice.describe()
