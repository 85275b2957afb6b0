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

if TYPE_CHECKING:  # config.py imports this registry to validate names: typed, not imported back
    from nas.data.config import DataConfig
    from nas.data.imagefolder import FileSplits


Loader = Callable[["DataConfig"], "ArraySplits | FileSplits"]


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
        cfg: The data settings.

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


# How each reader turns its raw files into uint8 pixels [C, H, W] (before the shared ``x =
# (pixels / 255 - mean) / std``): what ``model.json`` tells a user of the exported network.
_RAW = {
    "digits": {
        "raw": "sklearn.datasets.load_digits().images: float64 [1797, 8, 8], integer values "
        "in [0, 16], one grey channel",
        "raw_range": [0, 16],
        "to_pixels": "pixels = numpy.rint(raw * 255 / 16) as uint8 in [0, 255], shape [N, 1, 8, 8]",
        "pixel_scale": 255 / 16,
    },
    "synthetic": {
        "raw": "nas.data.synthetic.make_synthetic(num_samples, input_shape, num_classes): "
        "uint8 [N, C, H, W] in [0, 255]",
        "raw_range": [0, 255],
        "to_pixels": "none (the raw images are the pixels)",
        "pixel_scale": None,
        "channels": "input_shape[0] (no colour meaning)",
    },
    "imagenet16_120": {
        "raw": "the ImageNet16 pickles' 'data': uint8 [N, 768] in [0, 255], each row the red, "
        "then green, then blue plane of a 16x16 image, row-major",
        "raw_range": [0, 255],
        "to_pixels": "pixels = data.reshape(N, 3, 16, 16) (RGB planes)",
        "pixel_scale": None,
    },
}
for _name in ("cifar10", "cifar100"):
    _RAW[_name] = {
        "raw": "the official python version's pickles, b'data': uint8 [N, 3072] in [0, 255], "
        "each row the red, then green, then blue plane of a 32x32 image, row-major",
        "raw_range": [0, 255],
        "to_pixels": "pixels = data.reshape(N, 3, 32, 32) (RGB planes)",
        "pixel_scale": None,
    }


def preprocessing(cfg: DataConfig) -> dict[str, Any]:
    """What turns a raw image of the dataset into the float32 tensor the network sees when it
    is evaluated (the test split's path: no augmentation), exactly as the loaders do it.

    Returns ``raw`` (the source and its value range), ``to_pixels`` (how the reader makes
    uint8 pixels of it; ``pixel_scale``, when not null, multiplies raw values before rounding),
    ``channels``, ``scale`` (pixels are divided by it), ``mean`` / ``std`` (per channel, in
    [0, 1] units), ``layout`` and the whole ``formula``.
    """
    channels, height, width = (int(s) for s in cfg.input_shape)
    mean, std = [float(m) for m in cfg.mean], [float(s) for s in cfg.std]
    if cfg.name in FILE_DATASETS:
        resize = int(cfg.eval_resize)
        raw = {
            "raw": "image files (JPEG, PNG) decoded with Pillow and converted to RGB",
            "raw_range": [0, 255],
            "to_pixels": f"resize the shorter side to {resize} (bilinear, the longer side "
            f"int({resize} * long / short)), crop the centre {height}x{width} (offsets "
            f"round((size - {height}) / 2)), uint8 HWC -> CHW",
            "pixel_scale": None,
        }
    else:
        raw = _RAW.get(cfg.name) or {
            "raw": f"the uint8 [N, C, H, W] images of the registered reader {cfg.name!r}",
            "raw_range": [0, 255],
            "to_pixels": "none (the reader's images are the pixels)",
            "pixel_scale": None,
        }
    scaled = raw["pixel_scale"]
    pixels = "pixels" if scaled is None else f"numpy.rint(raw * {scaled:g})"
    colours = {1: "1 (grey)", 3: "3 (RGB order)"}.get(channels, str(channels))
    out = {
        **raw,
        "channels": raw.get("channels", colours),
        "scale": 255,
        "mean": mean,
        "std": std,
        "layout": f"float32 NCHW [N, {channels}, {height}, {width}]",
        "formula": f"x = ({pixels} / 255 - mean) / std, per channel",
    }
    if cfg.name == "digits":  # no official test split: the reader's fixed held-out one
        from nas.data.digits import SPLIT_SEED

        out["test_split"] = (
            "sklearn.model_selection.train_test_split(images, target, test_size="
            f"{float(cfg.test_fraction):g}, stratify=target, random_state={SPLIT_SEED}): "
            "its second part (the 'test' images)"
        )
    return out
