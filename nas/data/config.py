"""The settings of the ``data`` config group, and their validation.

``DataConfig`` is a plain dataclass: ``nas.run.schema`` registers it in Hydra's ConfigStore as
group ``data``, name ``base_data`` (every ``conf/data/*.yaml`` starts with
``defaults: [base_data, _self_]``), so a typo in a key or a wrongly typed value fails at compose
time, and ``nas.run`` hands the data room the composed node as this dataclass. Fields without a
default are mandatory (OmegaConf marks them ``???``); only OmegaConf-compatible field types are
used (no ``X | None`` unions, which OmegaConf cannot express, hence ``Optional``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional  # noqa: UP035 - OmegaConf needs typing.Optional

from nas.data.datasets import FILE_DATASETS, dataset_names, is_token_dataset

SPLITS = ("darts", "nb201")
PIPELINES = ("auto", "device", "loader")


@dataclass(kw_only=True)  # mandatory fields stay in reading order, among the defaulted ones
class DataConfig:
    """Which dataset to load, how to split it and how to augment it.

    Attributes:
        name: Registry key of the dataset (``digits``, ``synthetic``, ``cifar10``, ``cifar100``,
            ``imagenet16_120``, ``imagefolder``, ``imagenet``; ``text``: token sequences).
        root: Directory of on-disk datasets; ignored by digits, synthetic and text.
        download: Download a missing file that has an official URL (CIFAR); every file with a
            known checksum is verified before use either way.
        input_shape: ``[C, H, W]`` of one image (image folders: the crop size); for text
            ``[T]``, the context length in tokens.
        num_classes: Number of labels; for text the vocabulary (256 bytes, 50257 gpt2).
        mean: Per-channel mean in [0, 1] pixel units, used for normalization (text: ``[]``).
        std: Per-channel standard deviation in [0, 1] pixel units (text: ``[]``).
        split: ``darts``: search on ``train_portion`` / rest of the training set, retrain on
            the training set and evaluate on the whole test set. ``nb201`` (cifar100,
            imagenet16_120): NAS-Bench-201's protocol, the test set halved into x-valid and
            x-test (``nas/data/splits.py``): search trains weights on the whole training set
            and α on x-valid; retraining validates on x-valid and tests on x-test.
        train_portion: Search split: fraction of the training set used for the weight step;
            the rest is used for the architecture step (DARTS uses 0.5).
        test_fraction: Held-out stratified test fraction, only for datasets without an
            official test set (digits).
        crop_padding: Random crop with this zero padding (0 = no crop).
        hflip: Random horizontal flip.
        num_samples: Synthetic only: training-set size (the test set has ``num_samples // 4``).
        num_workers: DataLoader worker processes (0 = load in the main process).
        pipeline: ``device``: uint8 arrays gathered by index, augmented as whole batches on the
            training device; ``loader``: per-sample decode and augmentation in DataLoader
            workers; ``auto``: ``loader`` for image folders, else ``device``.
        device_cache: With the ``device`` pipeline on an accelerator, hold the whole uint8
            dataset in device memory (when it fits), so batches never cross the bus.
        eval_resize: Image folders: shorter side before the evaluation centre crop (256 for
            224 crops, as in the ImageNet-mobile papers).
        crop_scale: Image folders: area range of the training random resized crop.
        tokenizer: Text only: ``bytes`` (UTF-8 bytes, 256 ids) or ``gpt2`` (GPT-2's BPE, 50257
            ids; needs ``tiktoken`` or ``transformers``).
        path: Text only: a UTF-8 file, or a folder whose ``*.txt`` / ``*.md`` / ``*.py`` files
            are read in sorted order; null = the embedded corpus (Python's own help text).
    """

    name: str
    root: Optional[str] = None  # noqa: UP045 - OmegaConf cannot parse `str | None`
    input_shape: list[int]
    num_classes: int
    mean: list[float]
    std: list[float]
    train_portion: float = 0.5
    test_fraction: float = 0.2
    crop_padding: int = 0
    hflip: bool = False
    num_samples: int = 512
    num_workers: int = 0
    download: bool = True
    split: str = "darts"
    pipeline: str = "auto"
    device_cache: bool = True
    eval_resize: int = 256
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    tokenizer: str = "bytes"
    path: Optional[str] = None  # noqa: UP045


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_data_config(cfg: DataConfig) -> None:
    """Checks the data settings: the dataclass holds what Hydra typed, not what makes sense.

    Args:
        cfg: The ``data`` settings of the run.

    Raises:
        ValueError: One paragraph naming every bad value together with its valid range.
    """
    problems: list[str] = []
    name = cfg.name
    if name not in dataset_names():
        problems.append(f"data.name={name!r} is not a known dataset (valid: {dataset_names()})")

    shape = list(cfg.input_shape)
    channels = None
    tokens = is_token_dataset(name)
    if tokens:
        problems += _token_problems(cfg)
    elif len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        problems.append(f"data.input_shape={shape} must be three positive ints [C, H, W]")
    else:
        channels = shape[0]
    if not tokens:
        for key, default in (("tokenizer", "bytes"), ("path", None)):
            if getattr(cfg, key) != default:
                problems.append(
                    f"data.{key}={_yaml(getattr(cfg, key))} applies to token datasets "
                    f"(data=text) only, not {name!r}: leave it at {_yaml(default)}"
                    + (" (image datasets read data.root)" if key == "path" else "")
                )

    num_classes = cfg.num_classes
    if not isinstance(num_classes, int) or num_classes < 2:
        problems.append(f"data.num_classes={num_classes} must be an int >= 2")

    for key, low_ok in (("mean", True), ("std", False)):
        values = list(getattr(cfg, key))
        if channels is not None and len(values) != channels:
            problems.append(
                f"data.{key} has {len(values)} entries but input_shape has {channels} channels"
            )
        bad = [v for v in values if not _is_number(v) or v > 1 or v < 0 or (v == 0 and not low_ok)]
        if bad:
            valid = "[0, 1]" if low_ok else "(0, 1]"
            problems.append(f"data.{key}={values} must hold numbers in {valid} (pixel units)")

    for key in ("train_portion", "test_fraction"):
        value = getattr(cfg, key)
        if not _is_number(value) or not 0 < value < 1:
            problems.append(f"data.{key}={value} must lie in the open interval (0, 1)")

    for key, minimum in (("crop_padding", 0), ("num_workers", 0), ("num_samples", 4)):
        value = getattr(cfg, key)
        if not isinstance(value, int) or value < minimum:
            problems.append(f"data.{key}={value} must be an int >= {minimum}")

    for key, valid in (("split", SPLITS), ("pipeline", PIPELINES)):
        value = getattr(cfg, key)
        if value not in valid:
            problems.append(f"data.{key}={value!r} must be one of {list(valid)}")
    if cfg.split == "nb201" and name not in ("cifar100", "imagenet16_120"):
        problems.append(f"data.split=nb201 needs cifar100 or imagenet16_120, not {name!r}")
    if tokens and cfg.pipeline == "loader":
        problems.append(
            f"data.pipeline=loader decodes images per sample; {name!r} is token windows "
            "gathered per batch: use device (or auto)"
        )
    if cfg.pipeline == "device" and name in FILE_DATASETS:
        problems.append(f"data.pipeline=device cannot hold {name!r} (read per file): use loader")
    scale = list(cfg.crop_scale)
    if (
        len(scale) != 2
        or not all(_is_number(v) for v in scale)
        or not 0 < scale[0] <= scale[1] <= 1
    ):
        problems.append(f"data.crop_scale={scale} must be [low, high] with 0 < low <= high <= 1")
    resize = cfg.eval_resize
    if not isinstance(resize, int) or resize < 1:
        problems.append(f"data.eval_resize={resize} must be an int >= 1")

    hflip = cfg.hflip
    if not isinstance(hflip, bool):
        problems.append(f"data.hflip={hflip!r} must be true or false")

    if problems:
        raise ValueError("Invalid data config: " + "; ".join(problems) + ".")


def _token_problems(cfg: DataConfig) -> list[str]:
    """A token dataset's own settings, and the image settings it must leave neutral."""
    from nas.data.text import TOKENIZERS, VOCAB_SIZES, gpt2_backend, gpt2_missing

    problems: list[str] = []
    shape = list(cfg.input_shape)
    if len(shape) != 1 or not isinstance(shape[0], int) or shape[0] < 1:
        problems.append(
            f"data.input_shape={shape} must be [T] for data={cfg.name}: one positive int, the "
            "context length in tokens (e.g. [64])"
        )
    tokenizer = cfg.tokenizer
    if tokenizer not in TOKENIZERS:
        problems.append(f"data.tokenizer={tokenizer!r} must be one of {list(TOKENIZERS)}")
    else:
        if tokenizer == "gpt2" and gpt2_backend() is None:
            problems.append(gpt2_missing().rstrip("."))
        vocab = VOCAB_SIZES[tokenizer]
        if cfg.num_classes != vocab:
            problems.append(
                f"data.num_classes={cfg.num_classes} must be the vocabulary of "
                f"data.tokenizer={tokenizer} ({vocab}): set data.num_classes={vocab}"
            )
    image = {"mean": [], "std": [], "crop_padding": 0, "hflip": False}
    for key, neutral in image.items():
        value = getattr(cfg, key)
        if (list(value) if isinstance(value, list) else value) != neutral:
            problems.append(
                f"data.{key}={_yaml(value)} is an image setting; data={cfg.name} has token ids, "
                f"not pixels: set data.{key}={_yaml(neutral)}"
            )
    if cfg.path is not None and not isinstance(cfg.path, str):
        problems.append(f"data.path={cfg.path!r} must be a path (a file or folder) or null")
    elif cfg.path is not None and not Path(cfg.path).expanduser().exists():
        problems.append(
            f"data.path={cfg.path!r} does not exist: give a UTF-8 file, a folder of *.txt / "
            "*.md / *.py files, or null (the embedded corpus, Python's help text)"
        )
    return problems


def _yaml(value: Any) -> str:
    """A value as it is written on the command line (``true``, ``null``, ``[0.5]``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return str(list(value)) if isinstance(value, (list, tuple)) else str(value)
