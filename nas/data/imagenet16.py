"""Reader of down-sampled ImageNet 16x16 (Chrabaszcz et al., 2017) and its 120-class subset.

NAS-Bench-201 (Dong & Yang, ICLR 2020) evaluates on ImageNet16-120: the 16x16 version of
ImageNet restricted to labels 1..120, relabelled 0..119 (151,700 training and 6,000 validation
images). The files are the ImageNet16 release's pickles in one folder: ``train_data_batch_1`` ..
``train_data_batch_10`` and ``val_data``, each a dict with ``data`` (uint8 [N, 768], each row
the 256 red, then green, then blue pixels of a 16x16 image, row-major) and ``labels``
(ints 1..1000). There is no public unauthenticated URL (image-net.org requires a login), so
nothing is downloaded: a missing file raises an error that says where to get it. The image
counts of the subset are checked exactly, so a partial dataset is never used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nas.data.base import ArraySplits
from nas.data.cifar import unpickle
from nas.data.download import DatasetFileError

IMAGE_SHAPE = (3, 16, 16)
TRAIN_FILES = tuple(f"train_data_batch_{i}" for i in range(1, 11))
VAL_FILE = "val_data"


@dataclass(frozen=True)
class ImageNet16Spec:
    """Which classes to keep and how many images the subset must have.

    Attributes:
        num_classes: Keep labels 1..num_classes (relabelled 0..num_classes-1).
        num_train: Expected training images of the subset (checked exactly).
        num_test: Expected validation images of the subset (checked exactly).
    """

    num_classes: int = 120
    num_train: int = 151700
    num_test: int = 6000


SPECS: dict[str, ImageNet16Spec] = {"imagenet16_120": ImageNet16Spec()}


def how_to_get(root: Path) -> str:
    files = ", ".join((*TRAIN_FILES, VAL_FILE))
    return (
        f"ImageNet16 is expected as the pickles {files} directly inside {root}. Download "
        "Imagenet16_train.zip and Imagenet16_val.zip (the 16x16 'Downsampled ImageNet' release, "
        "https://image-net.org/download-images.php, login required; NAS-Bench-201's data release "
        "ships the same files) and unzip both into that folder; data.root selects the directory."
    )


def _read(path: Path, root: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickle → the images and 0-based labels of classes 1..num_classes."""
    try:
        batch = unpickle(path.read_bytes(), encoding="latin1")
    except Exception as err:
        raise ValueError(
            f"ImageNet16 file {path} is unreadable or corrupt ({err}). " + how_to_get(root)
        ) from err
    if isinstance(batch, dict):
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise ValueError(f"ImageNet16 file {path} lacks 'data'/'labels'. " + how_to_get(root))
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise ValueError(
            f"ImageNet16 file {path}: 'data' is {data.dtype} {data.shape}, expected uint8 "
            "[N, 768]. " + how_to_get(root)
        )
    if labels.shape != (data.shape[0],) or labels.min() < 1 or labels.max() > 1000:
        raise ValueError(
            f"ImageNet16 file {path}: 'labels' has shape {labels.shape} or values outside "
            "1..1000. " + how_to_get(root)
        )
    keep = labels <= num_classes
    return data[keep].reshape(-1, *IMAGE_SHAPE), labels[keep] - 1


def load_imagenet16(root: str | Path, spec: ImageNet16Spec | None = None) -> ArraySplits:
    """Loads ImageNet16-<num_classes> from the ImageNet16 pickles in ``root``.

    Args:
        root: Folder holding ``train_data_batch_1..10`` and ``val_data``.
        spec: Class subset and expected counts (default: ImageNet16-120).

    Returns:
        Training set and the official validation set (as the test set), uint8
        [N, 3, 16, 16] with int64 labels 0..num_classes-1.

    Raises:
        DatasetFileError: A file is missing.
        ValueError: A file is corrupt, or the subset's image counts are not the expected ones.
    """
    spec = spec or SPECS["imagenet16_120"]
    root = Path(root).expanduser()
    missing = [name for name in (*TRAIN_FILES, VAL_FILE) if not (root / name).is_file()]
    if missing:
        raise DatasetFileError(
            f"ImageNet16 not found under data.root={str(root)!r}: missing {missing}. "
            + how_to_get(root)
        )
    train = [_read(root / name, root, spec.num_classes) for name in TRAIN_FILES]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    x_test, y_test = _read(root / VAL_FILE, root, spec.num_classes)
    for split, x, expected in (
        ("training", x_train, spec.num_train),
        ("val", x_test, spec.num_test),
    ):
        if x.shape[0] != expected:
            raise ValueError(
                f"ImageNet16-{spec.num_classes} under {root} has {x.shape[0]} {split} images of "
                f"labels 1..{spec.num_classes}, not {expected}: the files are partial or not the "
                "official ones. " + how_to_get(root)
            )
    return ArraySplits(
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)),
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(y_test),
    )
