"""Registry of datasets held as in-memory uint8 tensors.

Every dataset we search on is small enough to live in memory (CIFAR-10 is 180 MB as uint8,
ImageNet16-120 93 MB), so a reader returns whole tensors and the loaders gather batches by index:
no per-sample decoding or collation. Image folders (ImageNet) are the exception: their reader
lists files, decoded per sample in DataLoader workers. Token datasets (``text``) are sequences:
their reader returns a token stream per split (``nas.data.text.TokenSplits``), gathered into
context windows (``nas.data.tokens``). Readers are imported lazily so that, e.g., the CIFAR
reader costs nothing for a digits run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from nas.data.base import ArraySplits

if TYPE_CHECKING:  # config.py imports this registry to validate names: typed, not imported back
    from nas.data.config import DataConfig
    from nas.data.imagefolder import FileSplits
    from nas.data.text import TokenSplits


Loader = Callable[["DataConfig"], "ArraySplits | FileSplits | TokenSplits"]


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


def _load_text(cfg: DataConfig) -> TokenSplits:
    from nas.data.text import load_text

    return load_text(cfg.path, cfg.tokenizer, cfg.test_fraction)


_REGISTRY: dict[str, Loader] = {
    "digits": _load_digits,
    "synthetic": _load_synthetic,
    "cifar10": _load_cifar,
    "cifar100": _load_cifar,
    "imagenet16_120": _load_imagenet16,
    "imagefolder": _load_image_folder,
    "imagenet": _load_image_folder,
    "text": _load_text,
}
# Datasets read per file (not held as one tensor): they use the per-sample DataLoader pipeline.
FILE_DATASETS = frozenset({"imagefolder", "imagenet"})
# Token sequences (language modelling): input_shape is [context], num_classes the vocabulary,
# inputs are int64 token ids and no image setting (mean, std, crop, flip, cutout) applies.
_TOKEN_DATASETS = {"text"}


def dataset_names() -> list[str]:
    """Names accepted as ``data.name``, sorted."""
    return sorted(_REGISTRY)


def register_dataset(
    name: str, loader: Loader, overwrite: bool = False, tokens: bool = False
) -> None:
    """Adds a dataset reader to the registry.

    Args:
        name: Key used as ``data.name``.
        loader: Function from the data config to the dataset's ``ArraySplits`` (or, with
            ``tokens``, its ``nas.data.text.TokenSplits``).
        overwrite: Replace an existing entry instead of raising.
        tokens: The dataset is token sequences (language modelling), not images.

    Raises:
        ValueError: If ``name`` is taken and ``overwrite`` is false.
    """
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered; pass overwrite=True to replace")
    _REGISTRY[name] = loader
    if tokens:
        _TOKEN_DATASETS.add(name)
    else:
        _TOKEN_DATASETS.discard(name)


def is_token_dataset(name: str) -> bool:
    """Whether ``name`` is token sequences (``input_shape`` = [context], int64 token inputs)."""
    return name in _TOKEN_DATASETS


def is_file_dataset(name: str) -> bool:
    """Whether ``name`` is read per file (image folders) rather than as in-memory arrays."""
    return name in FILE_DATASETS


def load_dataset(cfg: DataConfig) -> ArraySplits | FileSplits | TokenSplits:
    """Loads the dataset named by ``cfg.name`` and checks it against the config.

    Args:
        cfg: The data settings.

    Returns:
        ``ArraySplits`` (in-memory uint8 tensors), for image folders ``FileSplits``, for token
        datasets ``TokenSplits``.

    Raises:
        ValueError: Unknown name, or data whose shape/labels disagree with
            ``cfg.input_shape``/``cfg.num_classes``.
    """
    if cfg.name not in _REGISTRY:
        raise ValueError(
            f"Unknown dataset data.name={cfg.name!r}; valid names are {dataset_names()}."
        )
    data = _REGISTRY[cfg.name](cfg)
    if is_token_dataset(cfg.name):
        return _check_tokens(cfg, data)
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


def _check_tokens(cfg: DataConfig, data: TokenSplits) -> TokenSplits:
    """A token dataset's vocabulary and ids against ``data.num_classes``."""
    if data.vocab_size != cfg.num_classes:
        raise ValueError(
            f"data.tokenizer={data.tokenizer!r} has {data.vocab_size} token ids but "
            f"data.num_classes={cfg.num_classes}; set data.num_classes={data.vocab_size}."
        )
    for split in ("train", "test"):
        ids = getattr(data, split)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= cfg.num_classes):
            raise ValueError(
                f"dataset {cfg.name!r} has {split} token ids in [{int(ids.min())}, "
                f"{int(ids.max())}] but data.num_classes is {cfg.num_classes}."
            )
    return data


def token_bytes(cfg: DataConfig) -> torch.Tensor | None:
    """For a token dataset, the UTF-8 bytes of each token id of its tokenizer (what bits per
    byte divide by); None for image datasets."""
    if not is_token_dataset(cfg.name):
        return None
    from nas.data.text import get_tokenizer

    return get_tokenizer(cfg.tokenizer).token_bytes()


def load_arrays(cfg: DataConfig) -> ArraySplits:
    """Like :func:`load_dataset` for in-memory image datasets; image folders and token
    datasets raise ``ValueError``."""
    if is_file_dataset(cfg.name):
        raise ValueError(f"dataset {cfg.name!r} is read per file; use load_dataset")
    if is_token_dataset(cfg.name):
        raise ValueError(f"dataset {cfg.name!r} is token sequences; use load_dataset")
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
    [0, 1] units), ``layout`` and the whole ``formula``. For a token dataset, how text becomes
    token ids instead (``text_preprocessing``).
    """
    if is_token_dataset(cfg.name):
        return text_preprocessing(cfg)
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


def text_preprocessing(cfg: DataConfig) -> dict[str, Any]:
    """How a token dataset's text becomes the int64 input and what the output means."""
    (context,) = (int(s) for s in cfg.input_shape)
    tokens = {
        "bytes": "the UTF-8 bytes of the text: token id = byte value (0..255), "
        "list(text.encode('utf-8'))",
        "gpt2": "GPT-2's byte-level BPE (50257 ids, no special tokens): "
        "tiktoken.get_encoding('gpt2').encode_ordinary(text)",
    }.get(cfg.tokenizer, f"data.tokenizer={cfg.tokenizer!r}")
    corpus = cfg.path or "pydoc_data.topics of the Python that trained it, topics sorted"
    return {
        "raw": f"UTF-8 text: {corpus}",
        "tokenizer": cfg.tokenizer,
        "to_tokens": tokens,
        "vocab_size": int(cfg.num_classes),
        "context": context,
        "layout": f"int64 [N, {context}]: N windows of {context} consecutive token ids",
        "formula": f"x = ids[i : i + {context}] for window starts i; the logits' row "
        f"n * {context} + t predicts ids[i + t + 1] (the next token)",
    }
