"""Checkpoint files, whoever writes them (Lightning's trainer in ``nas.run``, DARTS-PT's own loop
in ``nas.search.pt_selection``): atomic writes, the file's name, and the config stamp a file
carries with how two stamps differ.

``AtomicCheckpointIO`` writes every checkpoint to a temporary file that is flushed and renamed
into place, so a crash during a write leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from nas.core.io import current_umask

LAST = "last.ckpt"
# The key of a checkpoint's config stamp: the parts of the config that define the run.
STAMP_KEY = "oneshot_nas_config"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``.<name>.tmp`` beside the target, ``fsync``, then ``os.replace``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Makes the rename itself durable (a power cut after ``os.replace`` keeps the new file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Every dotted key where two config stamps differ, with both values."""
    a, b = _flatten(saved), _flatten(current)
    return [f"{k}: {a.get(k, '<absent>')!r} in the checkpoint, {b.get(k, '<absent>')!r} now"
            for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]  # fmt: skip
