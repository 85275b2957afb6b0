"""Small file helpers: atomic writes (no half-written result ever looks like a real one) that
leave files as readable as any other file the user creates (the umask's mode, not 0600)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """The process's umask (read back by setting it: POSIX has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Opens a temporary file beside ``path``; on success it is flushed to disk and renamed
    onto ``path``, so a crash leaves either the old file or the new one, never a partial one.

    ``tempfile.mkstemp`` creates its file 0600; the result gets ``0666 & ~umask`` instead, the
    mode ``open`` would give, so collaborators on a shared filesystem can read the results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Writes JSON atomically (``atomic_file``)."""
    with atomic_file(path) as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def read_json(path: str | Path, what: str) -> Any:
    """Reads a JSON file; a missing or unparsable file raises one clear ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The {what} {str(path)!r} does not exist or is not a file.")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"The {what} {str(path)!r} is not valid JSON ({err}).") from None
