"""Typed schema of the ``data`` config group and its validation.

The dataclass is registered in Hydra's ConfigStore as group ``data``, name ``base_data``;
every ``conf/data/*.yaml`` starts with ``defaults: [base_data, _self_]`` so a typo in a key
or a wrongly typed value fails at compose time. Only OmegaConf-compatible field types are
used (no ``X | None`` unions, which OmegaConf cannot express, hence ``Optional``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional  # noqa: UP035 - OmegaConf needs typing.Optional

from omegaconf import MISSING
from omegaconf.errors import MissingMandatoryValue

from nas.data.datasets import dataset_names


@dataclass
class DataConfig:
    """Which dataset to load, how to split it and how to augment it.

    Attributes:
        name: Registry key of the dataset (``digits``, ``synthetic``, ``cifar10``).
        root: Directory of on-disk datasets (cifar10); ignored by digits and synthetic.
        input_shape: ``[C, H, W]`` of one image.
        num_classes: Number of labels.
        mean: Per-channel mean in [0, 1] pixel units, used for normalization.
        std: Per-channel standard deviation in [0, 1] pixel units.
        train_portion: Search split: fraction of the training set used for the weight step;
            the rest is used for the architecture step (DARTS uses 0.5).
        test_fraction: Held-out stratified test fraction, only for datasets without an
            official test set (digits).
        crop_padding: Random crop with this zero padding (0 = no crop).
        hflip: Random horizontal flip.
        num_samples: Synthetic only: training-set size (the test set has ``num_samples // 4``).
        num_workers: DataLoader worker processes (0 = load in the main process).
    """

    name: str = MISSING
    root: Optional[str] = None  # noqa: UP045 - OmegaConf cannot parse `str | None`
    input_shape: list[int] = MISSING
    num_classes: int = MISSING
    mean: list[float] = MISSING
    std: list[float] = MISSING
    train_portion: float = 0.5
    test_fraction: float = 0.2
    crop_padding: int = 0
    hflip: bool = False
    num_samples: int = 512
    num_workers: int = 0


def _get(cfg: Any, key: str, problems: list[str]) -> Any:
    """Reads ``cfg.key`` from a dataclass or DictConfig, recording a missing value."""
    try:
        value = getattr(cfg, key)
    except MissingMandatoryValue:
        value = MISSING
    except AttributeError:
        problems.append(f"data.{key} is absent")
        return None
    if value == MISSING:
        problems.append(f"data.{key} is mandatory but was not set")
        return None
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_data_config(cfg: Any) -> None:
    """Checks a data config (``DataConfig`` or a ``DictConfig`` of that shape).

    Args:
        cfg: The ``data`` node of the run config.

    Raises:
        ValueError: One paragraph naming every bad value together with its valid range.
    """
    problems: list[str] = []
    name = _get(cfg, "name", problems)
    if name is not None and name not in dataset_names():
        problems.append(f"data.name={name!r} is not a known dataset (valid: {dataset_names()})")

    shape = _get(cfg, "input_shape", problems)
    channels = None
    if shape is not None:
        shape = list(shape)
        if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
            problems.append(f"data.input_shape={shape} must be three positive ints [C, H, W]")
        else:
            channels = shape[0]

    num_classes = _get(cfg, "num_classes", problems)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
        problems.append(f"data.num_classes={num_classes} must be an int >= 2")

    for key, low_ok in (("mean", True), ("std", False)):
        values = _get(cfg, key, problems)
        if values is None:
            continue
        values = list(values)
        if channels is not None and len(values) != channels:
            problems.append(
                f"data.{key} has {len(values)} entries but input_shape has {channels} channels"
            )
        bad = [v for v in values if not _is_number(v) or v > 1 or v < 0 or (v == 0 and not low_ok)]
        if bad:
            valid = "[0, 1]" if low_ok else "(0, 1]"
            problems.append(f"data.{key}={values} must hold numbers in {valid} (pixel units)")

    for key in ("train_portion", "test_fraction"):
        value = _get(cfg, key, problems)
        if value is not None and (not _is_number(value) or not 0 < value < 1):
            problems.append(f"data.{key}={value} must lie in the open interval (0, 1)")

    for key, minimum in (("crop_padding", 0), ("num_workers", 0), ("num_samples", 4)):
        value = _get(cfg, key, problems)
        if value is not None and (not isinstance(value, int) or value < minimum):
            problems.append(f"data.{key}={value} must be an int >= {minimum}")

    hflip = _get(cfg, "hflip", problems)
    if hflip is not None and not isinstance(hflip, bool):
        problems.append(f"data.hflip={hflip!r} must be true or false")

    if problems:
        raise ValueError("Invalid data config: " + "; ".join(problems) + ".")
