"""The project's console messages, as Python logging: ``[oneshot-nas] message`` on stdout.

One logger per module, ``get_logger(__name__)``, each a child of the ``oneshot-nas`` logger,
which alone holds a handler: every message is configured or silenced through it, e.g.
``logging.getLogger("oneshot-nas").setLevel(logging.WARNING)``.

- The handler writes to the ``sys.stdout`` of the moment (pytest's ``capsys`` swaps it) and
  flushes each message, so they interleave in order with Lightning's and the run's prints.
- It does not propagate to the root logger: Hydra's job logging would print every message a
  second time, in its own format.
- Rank zero only: every DDP rank runs the same code, and N copies of a message say nothing
  more. The other ranks log only when the ``oneshot-nas`` logger is at DEBUG.
- Installed once per process (by name), however many modules, multirun jobs or tests ask.
"""

from __future__ import annotations

import logging
import os
import sys

from nas.core import distributed

ROOT = "oneshot-nas"
HANDLER = "oneshot-nas stdout"


class _Stdout(logging.StreamHandler):
    """A ``StreamHandler`` on whatever ``sys.stdout`` is when a message is written."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _) -> None:
        """``StreamHandler`` sets its stream; this handler has none of its own."""


def rank() -> int:
    """This process's DDP rank: the process group's; before the group exists (Lightning starts
    the ranks' processes first), the launcher's ``RANK`` or ``LOCAL_RANK``; else 0."""
    if distributed.is_distributed():
        return distributed.rank()
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def _on_this_rank(record: logging.LogRecord) -> bool:
    return rank() == 0 or logging.getLogger(ROOT).isEnabledFor(logging.DEBUG)


def install() -> logging.Logger:
    """The ``oneshot-nas`` logger with its stdout handler, added once; its level INFO unless
    already set (a level set before is kept)."""
    root = logging.getLogger(ROOT)
    if not any(h.name == HANDLER for h in root.handlers):
        handler = _Stdout()
        handler.set_name(HANDLER)
        handler.setFormatter(logging.Formatter(f"[{ROOT}] %(message)s"))
        handler.addFilter(_on_this_rank)
        root.addHandler(handler)
        root.propagate = False
        if root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
    return root


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (pass ``__name__``): ``oneshot-nas.<name>``."""
    install()
    return logging.getLogger(f"{ROOT}.{name}")
