"""Where the repository is: tests run ``train.py`` from its root and compose ``conf/``."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
