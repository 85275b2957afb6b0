"""Class-per-folder image trees (the ImageNet layout) and their Pillow geometry.

``root/train/<class>/*.JPEG`` and ``root/val/<class>/*``: classes are the sorted folder names
of ``train`` (labels 0..K-1 in that order); ``val`` may hold a subset of them. Files ending in
.jpeg, .jpg or .png (any case) are read. Images are decoded per sample (in DataLoader workers)
and cropped as the ImageNet-mobile papers do (DARTS, Liu et al., 2019, following Szegedy et al.):
training ``RandomResizedCrop(224)`` (area 8%-100% of the image, aspect ratio 3/4-4/3, bilinear)
and a horizontal flip; evaluation resizes the shorter side to 256 and takes the central
224 x 224. The sizes follow ``data.input_shape`` and ``data.eval_resize``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nas.data.download import DatasetFileError

EXTENSIONS = (".jpeg", ".jpg", ".png")


@dataclass(frozen=True)
class FileSplits:
    """Image files of a train/test split.

    Attributes:
        train_files: Paths of the training images.
        y_train: int64 labels [N_train].
        test_files: Paths of the test (val) images.
        y_test: int64 labels [N_test].
        classes: Class folder names; label ``i`` is ``classes[i]``.
    """

    train_files: list[str]
    y_train: torch.Tensor
    test_files: list[str]
    y_test: torch.Tensor
    classes: list[str]


def _scan(folder: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    files, labels = [], []
    for label, name in enumerate(classes):
        sub = folder / name
        if not sub.is_dir():
            continue
        for path in sorted(sub.iterdir()):
            if path.suffix.lower() in EXTENSIONS and path.is_file():
                files.append(str(path))
                labels.append(label)
    return files, labels


def scan_image_folder(root: str | Path, train: str = "train", test: str = "val") -> FileSplits:
    """Lists ``root/<train>/<class>/*`` and ``root/<test>/<class>/*``.

    Raises:
        DatasetFileError: A folder is missing or holds no images; ``test`` has unknown classes.
    """
    root = Path(root).expanduser()
    layout = f"{root}/{train}/<class>/*.JPEG and {root}/{test}/<class>/* (ImageNet layout)"
    for split in (train, test):
        if not (root / split).is_dir():
            raise DatasetFileError(
                f"image folder {root / split} does not exist; expected {layout}. Set data.root "
                "to the folder holding train/ and val/ (for ImageNet: the ILSVRC2012 train and "
                "val images from image-net.org, val sorted into class folders)."
            )
    classes = sorted(p.name for p in (root / train).iterdir() if p.is_dir())
    unknown = sorted(
        p.name for p in (root / test).iterdir() if p.is_dir() and p.name not in classes
    )
    if unknown:
        raise DatasetFileError(f"{root / test} has classes absent from {root / train}: {unknown}")
    train_files, train_labels = _scan(root / train, classes)
    test_files, test_labels = _scan(root / test, classes)
    if not train_files or not test_files:
        raise DatasetFileError(f"no .jpeg/.jpg/.png images found; expected {layout}.")
    return FileSplits(
        train_files,
        torch.tensor(train_labels, dtype=torch.long),
        test_files,
        torch.tensor(test_labels, dtype=torch.long),
        classes,
    )


def open_rgb(path: str) -> Image.Image:
    """Decodes an image file to RGB."""
    with Image.open(path) as img:
        return img.convert("RGB")


def resized_crop_box(
    width: int,
    height: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """The random box ``(left, top, w, h)`` of an Inception-style random resized crop.

    Up to 10 tries draw an area fraction uniformly in ``scale`` and a log-uniform aspect ratio
    in ``ratio``, keeping the first box that fits; otherwise the largest central box whose
    aspect ratio is clamped to ``ratio``.
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return left, top, w, h
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def random_resized_crop(
    img: Image.Image, size: tuple[int, int], generator: torch.Generator, scale=(0.08, 1.0)
) -> Image.Image:
    """Crops a random box (:func:`resized_crop_box`) and resizes it bilinearly to ``size`` (h, w)."""
    left, top, w, h = resized_crop_box(img.width, img.height, generator, tuple(scale))
    return img.resize(
        (size[1], size[0]), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h)
    )


def resize_center_crop(img: Image.Image, resize: int, size: tuple[int, int]) -> Image.Image:
    """Resizes the shorter side to ``resize`` (aspect kept, bilinear), then crops the centre."""
    if img.width <= img.height:
        new_w, new_h = resize, int(resize * img.height / img.width)
    else:
        new_w, new_h = int(resize * img.width / img.height), resize
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top = int(round((new_h - size[0]) / 2.0))
    left = int(round((new_w - size[1]) / 2.0))
    return img.crop((left, top, left + size[1], top + size[0]))


def to_uint8_chw(img: Image.Image) -> torch.Tensor:
    """An RGB image as a uint8 tensor [3, H, W]."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
