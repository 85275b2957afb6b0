"""Registry of datasets held as in-memory uint8 tensors.

Every dataset we search on is small enough to live in memory (CIFAR-10 is 180 MB as uint8), so
a reader returns whole tensors and the loaders gather batches by index: no per-sample decoding
or collation. Readers are imported lazily so that, e.g., the CIFAR reader costs nothing for a
digits run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from nas.data.config import DataConfig


@dataclass(frozen=True)
class ArraySplits:
    """Official (or fixed held-out) train/test split of one dataset.

    Attributes:
        x_train: uint8 images, [N_train, C, H, W].
        y_train: int64 labels, [N_train].
        x_test: uint8 images, [N_test, C, H, W].
        y_test: int64 labels, [N_test].
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(
                    f"x_{split} must be uint8 [N, C, H, W], got {x.dtype} {tuple(x.shape)}"
                )
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(
                    f"y_{split} must be int64 [{x.shape[0]}], got {y.dtype} {tuple(y.shape)}"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"train images {tuple(self.x_train.shape[1:])} and test images "
                f"{tuple(self.x_test.shape[1:])} differ in shape"
            )


Loader = Callable[["DataConfig"], ArraySplits]


def _load_digits(cfg: DataConfig) -> ArraySplits:
    from nas.data.digits import load_digits_splits

    return load_digits_splits(test_fraction=cfg.test_fraction)


def _load_synthetic(cfg: DataConfig) -> ArraySplits:
    from nas.data.synthetic import make_synthetic

    return make_synthetic(
        num_samples=cfg.num_samples,
        input_shape=tuple(cfg.input_shape),
        num_classes=cfg.num_classes,
    )


def _load_cifar10(cfg: DataConfig) -> ArraySplits:
    from nas.data.cifar import load_cifar10

    if cfg.root is None:
        raise ValueError(
            "data.root is null but cifar10 is read from disk: set data.root (or the environment "
            "variable NAS_DATA_ROOT used by conf/data/cifar10.yaml) to the directory holding "
            "cifar-10-python.tar.gz or its extracted cifar-10-batches-py folder."
        )
    return load_cifar10(cfg.root)


_REGISTRY: dict[str, Loader] = {
    "digits": _load_digits,
    "synthetic": _load_synthetic,
    "cifar10": _load_cifar10,
}


def dataset_names() -> list[str]:
    """Names accepted as ``data.name``, sorted."""
    return sorted(_REGISTRY)


def register_dataset(name: str, loader: Loader, overwrite: bool = False) -> None:
    """Adds a dataset reader to the registry.

    Args:
        name: Key used as ``data.name``.
        loader: Function from the data config to the dataset's ``ArraySplits``.
        overwrite: Replace an existing entry instead of raising.

    Raises:
        ValueError: If ``name`` is taken and ``overwrite`` is false.
    """
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered; pass overwrite=True to replace")
    _REGISTRY[name] = loader


def load_arrays(cfg: DataConfig | Any) -> ArraySplits:
    """Loads the dataset named by ``cfg.name`` and checks it against the config.

    Args:
        cfg: A ``DataConfig`` (or DictConfig of that shape).

    Returns:
        The train/test tensors.

    Raises:
        ValueError: Unknown name, or arrays whose shape/labels disagree with
            ``cfg.input_shape``/``cfg.num_classes``.
    """
    if cfg.name not in _REGISTRY:
        raise ValueError(
            f"Unknown dataset data.name={cfg.name!r}; valid names are {dataset_names()}."
        )
    arrays = _REGISTRY[cfg.name](cfg)
    expected = tuple(cfg.input_shape)
    if tuple(arrays.x_train.shape[1:]) != expected:
        raise ValueError(
            f"dataset {cfg.name!r} has images of shape {tuple(arrays.x_train.shape[1:])} but "
            f"data.input_shape is {list(expected)}; fix the data config."
        )
    for split, y in (("train", arrays.y_train), ("test", arrays.y_test)):
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= cfg.num_classes):
            raise ValueError(
                f"dataset {cfg.name!r} has {split} labels in [{int(y.min())}, {int(y.max())}] "
                f"but data.num_classes is {cfg.num_classes}."
            )
    return arrays
