"""Reading benchmark files safely and identifying them: a restricted unpickler, the file hash.

The benchmark files (NAS-Bench-201's ``.pth``, NATS-Bench's ``.pickle.pbz2``, HW-NAS-Bench's
``.pickle``) are pickles of plain data: dicts, lists, sets, ``OrderedDict``, numpy scalars and
arrays (and, in a ``.pth``, possibly tensors). ``load_pickle`` and ``load_torch_file`` unpickle
with the C unpickler (the real NAS-Bench-201 file is 2 GB; torch's ``weights_only`` unpickler
is pure Python and far slower) but resolve only those types: a file that names any other
global is refused (``UnsupportedFile``), never executed. The official APIs unpickle without
such a check.

``file_sha256`` identifies the file a result came from (``benchmark_sha256``): streamed in
1 MiB blocks (the real files are GBs), computed once per (path, size, mtime) per process.
"""

from __future__ import annotations

import bz2
import codecs
import hashlib
import io
import os
import pickle
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy >= 2 (numpy.core is a deprecated alias there)
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]


class UnsupportedFile(ValueError):
    """A file that is not in the format a reader expects (its message is one line)."""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The globals a benchmark's data may name, under both numpy 1.x (``numpy.core``: the files
    were written in 2020-21) and numpy 2 (``numpy._core``) module paths."""
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,
        ("__builtin__", "frozenset"): frozenset,
        ("_codecs", "encode"): codecs.encode,  # protocol-2 bytes (a numpy scalar's payload)
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "scalar")] = _multiarray.scalar
        allowed[(module, "_reconstruct")] = _multiarray._reconstruct
    return allowed


def _torch_globals() -> dict[tuple[str, str], Any]:
    """A ``.pth`` may hold tensors (trained weights): torch's own rebuild functions (storage
    types are resolved by ``torch.load`` before the unpickler is asked)."""
    import torch._utils

    names = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter")
    return {("torch._utils", n): getattr(torch._utils, n) for n in names}


class RestrictedUnpickler(pickle.Unpickler):
    """The C unpickler that resolves only the data types of ``_allowed_globals``."""

    allowed: dict[tuple[str, str], Any] = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which is not plain data")
        return found


class _TorchDataUnpickler(RestrictedUnpickler):
    allowed = {**_allowed_globals(), **_torch_globals()}


def _pickle_module(unpickler: type[pickle.Unpickler]) -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load`` whose ``Unpickler`` is ``unpickler``."""
    module = types.ModuleType("nas_restricted_pickle")
    module.Unpickler = unpickler  # type: ignore[attr-defined]
    module.load = lambda f, **kw: unpickler(f, **kw).load()  # type: ignore[attr-defined]
    module.loads = lambda b, **kw: unpickler(io.BytesIO(b), **kw).load()  # type: ignore[attr-defined]
    return module


def is_bz2(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(3) == b"BZh"


def load_pickle(path: str | Path) -> Any:
    """The data of a pickle file, bz2-compressed (NATS-Bench's ``.pickle.pbz2``) or not,
    through ``RestrictedUnpickler``; ``UnsupportedFile`` when it is not such a pickle."""
    path = Path(path)
    try:
        opener = bz2.open if is_bz2(path) else open
        with opener(path, "rb") as f:
            return RestrictedUnpickler(f).load()
    except (
        pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, KeyError,
        AttributeError, IndexError,
    ) as err:  # fmt: skip
        raise UnsupportedFile(
            f"{path.name} is not a readable data pickle ({one_line(err)})"
        ) from None


def load_torch_file(path: str | Path) -> Any:
    """The data of a ``torch.save`` file (the legacy format NAS-Bench-201's files use, or the
    zip format), unpickled by ``RestrictedUnpickler`` (plus torch's tensor rebuilders), on
    CPU; ``UnsupportedFile`` when it is not such a file."""
    import torch

    path = Path(path)
    try:
        return torch.load(
            path,
            map_location="cpu",
            pickle_module=_pickle_module(_TorchDataUnpickler),
            weights_only=False,  # the restricted pickle_module is the check (and C-fast)
        )
    except (
        pickle.UnpicklingError, EOFError, RuntimeError, ValueError, TypeError, KeyError,
        AttributeError, IndexError,
    ) as err:  # fmt: skip
        raise UnsupportedFile(
            f"{path.name} is not a readable torch.save file ({one_line(err)})"
        ) from None


def one_line(err: BaseException | str, limit: int = 200) -> str:
    """An error's message on one line (a reason is one line), shortened to ``limit``."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    """The SHA-256 of the file's bytes (hex), streamed; cached per (path, size, mtime)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(block), b""):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def file_key(path: str | Path) -> tuple[str, int, int]:
    """(resolved path, size, mtime in ns): a cache key that changes when the file does."""
    path = Path(path).resolve()
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def clear_hash_cache() -> None:
    _HASHES.clear()


def env_path(name: str) -> str | None:
    """The environment variable ``name`` as a path, None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or None
