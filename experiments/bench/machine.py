"""The machine a benchmark ran on, without importing torch (``shared_cores.py`` must set
OpenMP's environment before torch loads)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """``/proc/cpuinfo``'s model name (the processor or architecture where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
