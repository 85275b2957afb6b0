"""The per-sample DataLoader pipeline: decode and augment one image at a time in workers.

For datasets that do not fit in device memory (image folders) and as the classic reference for
the batched on-device pipeline (``augment.py``). The semantics are the same: training images
get a zero-padded random crop (or, for image files, a random resized crop), a horizontal flip
with probability 0.5, normalization, then cutout; evaluation images are only normalized (image
files: resized and centre-cropped first). Randomness comes from a per-sample seed drawn by the
sampler, so results do not depend on the number of workers. Crops, flips and cutout are written
with slicing, independently of the batched gathers, and tests check the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from nas.data.imagefolder import (
    open_rgb,
    random_resized_crop,
    resize_center_crop,
    to_uint8_chw,
)


class SampleTransform:
    """Turns one image (uint8 [C, H, W] tensor or a file path) into a float32 [C, H, W] tensor.

    Args:
        mean: Per-channel mean in [0, 1] pixel units.
        std: Per-channel standard deviation in [0, 1] pixel units.
        train: Augment (True) or only prepare for evaluation.
        crop_padding: Zero padding of the random crop of array images (0 = none).
        hflip: Random horizontal flip.
        cutout: Cutout side length (0 = none).
        size: ``(H, W)`` output of image files.
        eval_resize: Shorter side before the evaluation centre crop of image files.
        crop_scale: Area range of the random resized crop of image files.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        crop_padding: int = 0,
        hflip: bool = False,
        cutout: int = 0,
        size: tuple[int, int] | None = None,
        eval_resize: int = 256,
        crop_scale: Sequence[float] = (0.08, 1.0),
    ) -> None:
        self.mean = torch.tensor([float(m) for m in mean]).view(-1, 1, 1)
        self.std = torch.tensor([float(s) for s in std]).view(-1, 1, 1)
        self.train = train
        self.crop_padding, self.hflip, self.cutout = int(crop_padding), bool(hflip), int(cutout)
        self.size, self.eval_resize, self.crop_scale = size, int(eval_resize), tuple(crop_scale)

    def geometry(self, image: Any, gen: torch.Generator | None) -> torch.Tensor:
        """Crop and flip (training) or resize/centre crop (evaluation): uint8 [C, H, W]."""
        if isinstance(image, str):
            img = open_rgb(image)
            if self.train:
                img = random_resized_crop(img, self.size, gen, self.crop_scale)
            else:
                img = resize_center_crop(img, self.eval_resize, self.size)
            x = to_uint8_chw(img)
        else:
            x = image
            p = self.crop_padding
            if self.train and p > 0:
                dy, dx = torch.randint(0, 2 * p + 1, (2,), generator=gen).tolist()
                h, w = x.shape[-2:]
                x = F.pad(x, (p, p, p, p))[:, dy : dy + h, dx : dx + w]
        if self.train and self.hflip and bool(torch.rand(1, generator=gen) < 0.5):
            x = x.flip(-1)
        return x

    def __call__(self, image: Any, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(int(seed)) if self.train else None
        x = self.geometry(image, gen)
        x = (x.float() / 255.0 - self.mean) / self.std
        if self.train and self.cutout > 0:
            h, w = x.shape[-2:]
            cy = int(torch.randint(0, h, (1,), generator=gen))
            cx = int(torch.randint(0, w, (1,), generator=gen))
            half = self.cutout // 2
            x = x.clone()
            x[:, max(cy - half, 0) : max(cy + half, 0), max(cx - half, 0) : max(cx + half, 0)] = 0
        return x


class SampleDataset(Dataset):
    """One ``(image, label, tag)`` per ``(index, seed, iteration, position)`` item.

    Args:
        images: uint8 tensor [N, C, H, W] or a list of file paths.
        labels: int64 [N].
        transform: The per-sample pipeline.
        tagged: Return the ``(iteration, position)`` tag (training loaders; see ``modules.py``).
    """

    def __init__(
        self, images: Any, labels: torch.Tensor, transform: SampleTransform, tagged: bool
    ) -> None:
        if len(images) != labels.shape[0]:
            raise ValueError(f"{len(images)} images but {labels.shape[0]} labels")
        self.images, self.labels, self.transform, self.tagged = images, labels, transform, tagged

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int, int, int]) -> tuple:
        index, seed, iteration, position = item
        x = self.transform(self.images[index], seed)
        y = self.labels[index]
        return (x, y, torch.tensor([iteration, position])) if self.tagged else (x, y)
