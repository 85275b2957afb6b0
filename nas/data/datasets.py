"""Registry of datasets held as in-memory uint8 tensors.

Every dataset we search on is small enough to live in memory (CIFAR-10 is 180 MB as uint8,
ImageNet16-120 93 MB), so a reader returns whole tensors and the loaders gather batches by index:
no per-sample decoding or collation. Image folders (ImageNet) are the exception: their reader
lists files, decoded per sample in DataLoader workers. Readers are imported lazily so that,
e.g., the CIFAR reader costs nothing for a digits run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nas.data.base import ArraySplits

if TYPE_CHECKING:
    from nas.data.imagefolder import FileSplits

# A ``nas.data.config.DataConfig`` or a DictConfig of that shape (config.py imports this
# registry to validate names, so the type is not imported back).
DataConfig = Any


Loader = Callable[[DataConfig], "ArraySplits | FileSplits"]


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


def _root(cfg: DataConfig, what: str) -> str:
    if cfg.root is None:
        raise ValueError(
            f"data.root is null but {cfg.name} is read from disk: set data.root (or the "
            f"environment variable NAS_DATA_ROOT used by conf/data/{cfg.name}.yaml) to the "
            f"directory holding {what}."
        )
    return cfg.root


def _load_cifar(cfg: DataConfig) -> ArraySplits:
    from nas.data.cifar import SPECS, load_cifar

    spec = SPECS[cfg.name]
    root = _root(cfg, f"{spec.remote.filename} or its extracted {spec.folder} folder")
    return load_cifar(root, spec, download=cfg.download)


def _load_imagenet16(cfg: DataConfig) -> ArraySplits:
    from nas.data.imagenet16 import SPECS, load_imagenet16

    root = _root(cfg, "the ImageNet16 pickles train_data_batch_1..10 and val_data")
    return load_imagenet16(root, SPECS[cfg.name])


def _load_image_folder(cfg: DataConfig) -> FileSplits:
    from nas.data.imagefolder import scan_image_folder

    return scan_image_folder(_root(cfg, "train/<class>/* and val/<class>/* image folders"))


_REGISTRY: dict[str, Loader] = {
    "digits": _load_digits,
    "synthetic": _load_synthetic,
    "cifar10": _load_cifar,
    "cifar100": _load_cifar,
    "imagenet16_120": _load_imagenet16,
    "imagefolder": _load_image_folder,
    "imagenet": _load_image_folder,
}
# Datasets read per file (not held as one tensor): they use the per-sample DataLoader pipeline.
FILE_DATASETS = frozenset({"imagefolder", "imagenet"})


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


def is_file_dataset(name: str) -> bool:
    """Whether ``name`` is read per file (image folders) rather than as in-memory arrays."""
    return name in FILE_DATASETS


def load_dataset(cfg: DataConfig) -> ArraySplits | FileSplits:
    """Loads the dataset named by ``cfg.name`` and checks it against the config.

    Args:
        cfg: A ``DataConfig`` (or DictConfig of that shape).

    Returns:
        ``ArraySplits`` (in-memory uint8 tensors) or, for image folders, ``FileSplits``.

    Raises:
        ValueError: Unknown name, or data whose shape/labels disagree with
            ``cfg.input_shape``/``cfg.num_classes``.
    """
    if cfg.name not in _REGISTRY:
        raise ValueError(
            f"Unknown dataset data.name={cfg.name!r}; valid names are {dataset_names()}."
        )
    data = _REGISTRY[cfg.name](cfg)
    expected = tuple(cfg.input_shape)
    if isinstance(data, ArraySplits) and tuple(data.x_train.shape[1:]) != expected:
        raise ValueError(
            f"dataset {cfg.name!r} has images of shape {tuple(data.x_train.shape[1:])} but "
            f"data.input_shape is {list(expected)}; fix the data config."
        )
    for split, y in (("train", data.y_train), ("test", data.y_test)):
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= cfg.num_classes):
            raise ValueError(
                f"dataset {cfg.name!r} has {split} labels in [{int(y.min())}, {int(y.max())}] "
                f"but data.num_classes is {cfg.num_classes}."
            )
    return data


def load_arrays(cfg: DataConfig) -> ArraySplits:
    """Like :func:`load_dataset` for in-memory datasets; image folders raise ``ValueError``."""
    if is_file_dataset(cfg.name):
        raise ValueError(f"dataset {cfg.name!r} is read per file; use load_dataset")
    return load_dataset(cfg)
