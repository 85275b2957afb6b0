"""Readers of the official CIFAR-10 and CIFAR-100 "python version" files.

``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``;
``cifar-100-python.tar.gz`` holds ``cifar-100-python/train`` and ``test``. Each is a pickled
dict with ``b"data"`` (uint8 [N, 3072], each row the 1024 red, then green, then blue pixels of a
32x32 image in row-major order) and the labels (``b"labels"`` 0..9 for CIFAR-10,
``b"fine_labels"`` 0..99 for CIFAR-100; its ``b"coarse_labels"`` are not used).

We read the extracted folder when it is complete, else the archive's members in place (no
extraction to disk). A missing archive is downloaded when ``download`` is true; the archive's
MD5 is verified before it is read, and either source must hold exactly the official image
counts (50000 train, 10000 test), so a partial dataset is never used.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.data.base import ArraySplits
from nas.data.download import DatasetFileError, RemoteFile, ensure_file

IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class CifarSpec:
    """Layout of one CIFAR variant.

    Attributes:
        remote: The official archive (name, URL, MD5).
        folder: Folder the archive extracts to.
        train_files: Members holding the training set, in order.
        test_files: Members holding the test set.
        label_key: Pickle key of the labels.
        num_classes: Label count.
        num_train: Official training-set size (checked exactly).
        num_test: Official test-set size (checked exactly).
    """

    remote: RemoteFile
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int
    num_train: int = 50000
    num_test: int = 10000

    @property
    def name(self) -> str:
        return self.remote.dataset

    def how_to_get(self, root: Path) -> str:
        files = ", ".join((*self.train_files, *self.test_files))
        return (
            self.remote.how_to_get(root)
            + f" Alternatively extract it there so that {root / self.folder}/ holds {files}."
        )


SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        remote=RemoteFile(
            "CIFAR-10",
            "cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
        ),
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        label_key=b"labels",
        num_classes=10,
    ),
    "cifar100": CifarSpec(
        remote=RemoteFile(
            "CIFAR-100",
            "cifar-100-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
        ),
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        label_key=b"fine_labels",
        num_classes=100,
    ),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only builds what dataset batches contain (dicts, lists, numpy arrays).

    Pickle can run arbitrary code; restricting globals keeps a tampered file from doing so.
    """

    _ALLOWED = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str) -> Any:
        numpy_ok = module.split(".")[0] == "numpy" and name in self._ALLOWED
        if numpy_ok or (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a dataset batch")


def unpickle(blob: bytes, encoding: str = "bytes") -> Any:
    """Loads a dataset pickle with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(blob), encoding=encoding).load()


def _corrupt(spec: CifarSpec, where: str, root: Path, reason: object) -> ValueError:
    return ValueError(
        f"{spec.name} file {where} is unreadable or corrupt ({reason}). It should be the official "
        f"python version of {spec.name}; a truncated download is the usual cause. "
        + spec.how_to_get(root)
    )


def _decode(spec: CifarSpec, blob: bytes, where: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Unpickles one member into uint8 images [N, 3, 32, 32] and int64 labels [N]."""
    try:
        batch = unpickle(blob)
    except Exception as err:  # any unpickling failure means the file is not what we expect
        raise _corrupt(spec, where, root, err) from err
    if not isinstance(batch, dict) or b"data" not in batch or spec.label_key not in batch:
        raise _corrupt(spec, where, root, f'expected a dict with keys b"data" and {spec.label_key}')
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[spec.label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise _corrupt(
            spec, where, root, f"b'data' is {data.dtype} {data.shape}, expected uint8 [N, 3072]"
        )
    in_range = ((labels >= 0) & (labels < spec.num_classes)).all()
    if labels.shape != (data.shape[0],) or not in_range:
        raise _corrupt(
            spec,
            where,
            root,
            f"{spec.label_key} has shape {labels.shape} or values outside 0..{spec.num_classes - 1}",
        )
    return data.reshape(-1, *IMAGE_SHAPE), labels


def _read_archive(spec: CifarSpec, archive: Path, root: Path) -> dict[str, bytes]:
    """Reads the members in one forward pass (seeking back in a gzip re-decompresses)."""
    names = (*spec.train_files, *spec.test_files)
    wanted = {f"{spec.folder}/{name}": name for name in names}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is not None and member.isfile():
                    blobs[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise _corrupt(spec, str(archive), root, err) from err
    missing = sorted(set(names) - set(blobs))
    if missing:
        raise _corrupt(spec, str(archive), root, f"members {spec.folder}/{missing} are missing")
    return blobs


def load_cifar(root: str | Path, spec: CifarSpec, download: bool = True) -> ArraySplits:
    """Loads one CIFAR variant from ``root/<folder>/`` or ``root/<archive>``.

    The extracted folder is preferred when complete (no decompression); otherwise the archive
    is verified (MD5), downloaded first if missing and ``download`` is true, and read in place.

    Args:
        root: Directory holding the archive or its extracted folder.
        spec: The variant (``SPECS["cifar10"]`` or ``SPECS["cifar100"]``).
        download: Download the archive when neither it nor a complete folder exists.

    Returns:
        The official train and test sets as uint8 [N, 3, 32, 32] with int64 labels.

    Raises:
        DatasetFileError: Nothing usable under ``root`` (and no download), a failed download, or
            an archive whose checksum is wrong.
        ValueError: A file exists but is corrupt, or the image counts are not the official ones.
    """
    root = Path(root).expanduser()
    folder = root / spec.folder
    names = (*spec.train_files, *spec.test_files)
    missing = [name for name in names if not (folder / name).is_file()]
    if not missing:
        blobs = {name: (folder / name).read_bytes() for name in names}
        where = {name: str(folder / name) for name in names}
    else:
        archive = root / spec.remote.filename
        if not archive.is_file() and not download:
            found = f"the folder {folder} lacks {missing}" if folder.is_dir() else "it is absent"
            raise DatasetFileError(
                f"{spec.name} not found under data.root={str(root)!r} ({found}) and "
                f"data.download=false. " + spec.how_to_get(root)
            )
        archive = ensure_file(spec.remote, root, download=download)
        blobs = _read_archive(spec, archive, root)
        where = {name: f"{archive}:{spec.folder}/{name}" for name in names}
    parts = {name: _decode(spec, blobs[name], where[name], root) for name in names}

    def stack(files: tuple[str, ...], expected: int, split: str):
        x = np.concatenate([parts[name][0] for name in files])
        y = np.concatenate([parts[name][1] for name in files])
        if x.shape[0] != expected:
            raise _corrupt(
                spec, f"{root}/{spec.folder}", root, f"{x.shape[0]} {split} images, not {expected}"
            )
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)

    x_train, y_train = stack(spec.train_files, spec.num_train, "training")
    x_test, y_test = stack(spec.test_files, spec.num_test, "test")
    return ArraySplits(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def load_cifar10(root: str | Path, download: bool = True) -> ArraySplits:
    """CIFAR-10: 50000 training and 10000 test images, 10 classes (see :func:`load_cifar`)."""
    return load_cifar(root, SPECS["cifar10"], download)


def load_cifar100(root: str | Path, download: bool = True) -> ArraySplits:
    """CIFAR-100 with its 100 fine labels: 50000 training and 10000 test images."""
    return load_cifar(root, SPECS["cifar100"], download)
