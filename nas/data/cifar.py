"""Reader of the official CIFAR-10 "python version" files.

The archive ``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/data_batch_1..5`` and
``test_batch``: pickled dicts with ``b"data"`` (uint8 [10000, 3072], each row the 1024 red,
then green, then blue pixels of a 32x32 image in row-major order) and ``b"labels"`` (a list of
ints in 0..9). We read either the extracted folder or the archive's members directly, without
extracting to disk. Downloading is not done here.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.data.datasets import ArraySplits

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SHAPE = (3, 32, 32)

_HOW_TO_GET = (
    f"Download {URL} (md5 {MD5}) and place it at {{root}}/{ARCHIVE}, or extract it there so "
    f"that {{root}}/{FOLDER}/ holds {', '.join(TRAIN_BATCHES)} and {TEST_BATCH}; "
    "data.root (or NAS_DATA_ROOT) selects the directory."
)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only builds what a CIFAR batch contains (dicts, lists, numpy arrays).

    Pickle can run arbitrary code; restricting globals keeps a tampered file from doing so.
    """

    _ALLOWED = {"_reconstruct", "ndarray", "dtype", "scalar"}

    def find_class(self, module: str, name: str) -> Any:
        numpy_ok = module.split(".")[0] == "numpy" and name in self._ALLOWED
        if numpy_ok or (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def _corrupt(where: str, root: Path, reason: object) -> ValueError:
    return ValueError(
        f"CIFAR-10 file {where} is unreadable or corrupt ({reason}). It should be the official "
        f"python version of CIFAR-10; a truncated download is the usual cause. "
        + _HOW_TO_GET.format(root=root)
    )


def _decode_batch(blob: bytes, where: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Unpickles one batch into uint8 images [N, 3, 32, 32] and int64 labels [N]."""
    try:
        batch = _BatchUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as err:  # any unpickling failure means the file is not what we expect
        raise _corrupt(where, root, err) from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise _corrupt(where, root, 'expected a dict with keys b"data" and b"labels"')
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise _corrupt(
            where, root, f"b'data' is {data.dtype} {data.shape}, expected uint8 [N, 3072]"
        )
    labels_ok = labels.shape == (data.shape[0],) and ((labels >= 0) & (labels <= 9)).all()
    if not labels_ok:
        raise _corrupt(where, root, f"b'labels' has shape {labels.shape} or values outside 0..9")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def _read_folder(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in (*TRAIN_BATCHES, TEST_BATCH)}


def _read_archive(archive: Path, root: Path) -> dict[str, bytes]:
    """Reads the batch members in one forward pass (seeking back in a gzip re-decompresses)."""
    wanted = {f"{FOLDER}/{name}": name for name in (*TRAIN_BATCHES, TEST_BATCH)}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is not None and member.isfile():
                    blobs[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise _corrupt(str(archive), root, err) from err
    missing = sorted(set(wanted.values()) - set(blobs))
    if missing:
        raise _corrupt(str(archive), root, f"members {FOLDER}/{missing} are missing")
    return blobs


def load_cifar10(root: str | Path) -> ArraySplits:
    """Loads CIFAR-10 from ``root/cifar-10-batches-py/`` or ``root/cifar-10-python.tar.gz``.

    The extracted folder is preferred when complete (no decompression); otherwise the archive
    is read in place.

    Args:
        root: Directory holding the archive or its extracted folder.

    Returns:
        50000 training and 10000 test images as uint8 [N, 3, 32, 32] with int64 labels.

    Raises:
        FileNotFoundError: Neither a complete folder nor the archive exists under ``root``.
        ValueError: A file exists but is truncated or not in the official format.
    """
    root = Path(root).expanduser()
    folder, archive = root / FOLDER, root / ARCHIVE
    expected = (*TRAIN_BATCHES, TEST_BATCH)
    missing = [name for name in expected if not (folder / name).is_file()]
    if not missing:
        blobs = _read_folder(folder)
        where = {name: str(folder / name) for name in expected}
    elif archive.is_file():
        blobs = _read_archive(archive, root)
        where = {name: f"{archive}:{FOLDER}/{name}" for name in expected}
    else:
        found = (
            f"the folder {folder} lacks {missing}"
            if folder.is_dir()
            else f"neither {archive} nor {folder}/ exists"
        )
        raise FileNotFoundError(
            f"CIFAR-10 not found under data.root={str(root)!r}: {found}. "
            + _HOW_TO_GET.format(root=root)
        )
    splits = {name: _decode_batch(blobs[name], where[name], root) for name in expected}
    x_train = np.concatenate([splits[name][0] for name in TRAIN_BATCHES])
    y_train = np.concatenate([splits[name][1] for name in TRAIN_BATCHES])
    x_test, y_test = splits[TEST_BATCH]
    return ArraySplits(
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)),
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_test)),
    )
