"""Batched augmentation on the device the batch lives on.

The DARTS family trains on CIFAR-10 with ``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip()``, ``ToTensor``, ``Normalize`` and, for retraining, ``Cutout(16)``
applied after normalization (Liu et al., 2019, DARTS; DeVries & Taylor, 2017, Cutout). Those
are per-image PIL transforms in a worker; here the same operations act on a whole uint8 batch
at once on the GPU, with per-sample randomness drawn from an explicit ``torch.Generator`` on
that device, so results are reproducible and there is no per-sample Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected a batch [N, C, H, W], got shape {tuple(x.shape)}")


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Converts uint8 pixels to float32 ``(x / 255 - mean) / std`` per channel.

    Args:
        x: uint8 batch [N, C, H, W].
        mean: Per-channel mean in [0, 1] pixel units.
        std: Per-channel standard deviation in [0, 1] pixel units.

    Returns:
        float32 batch of the same shape on the same device.
    """
    _check_batch(x)
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {x.dtype}")
    if not len(mean) == len(std) == x.shape[1]:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} entries for {x.shape[1]} channels")
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - mean_t) / std_t


def crop_offsets(
    n: int, padding: int, generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """Random ``(dy, dx)`` crop offsets, uniform in ``[0, 2 * padding]``: [N, 2] int64."""
    return torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=device)


def crop_at(x: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pads each image by ``padding`` and crops H x W at its offset ``(dy, dx)``.

    Args:
        x: Batch [N, C, H, W].
        padding: Zero padding on each side.
        offsets: [N, 2] top-left corners in the padded image.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))  # [N, C, H+2p, W+2p]
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # [N, H]
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # [N, W]
    # Two gathers with broadcast (expanded, not copied) index views: rows, then columns.
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pads with zeros, then crops each image back to H x W at its own random offset.

    Equivalent to torchvision's ``RandomCrop(size=(H, W), padding=padding)`` applied per image.

    Args:
        x: Batch [N, C, H, W] of any dtype (DARTS crops raw pixels, so the padding is black).
        padding: Zero padding on each side; 0 returns ``x`` unchanged.
        generator: Random source on ``x.device``.

    Returns:
        Batch of the same shape and dtype.
    """
    _check_batch(x)
    if padding <= 0:
        return x
    return crop_at(x, padding, crop_offsets(x.shape[0], padding, generator, x.device))


def random_hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Flips each image left-right with probability ``p``.

    Args:
        x: Batch [N, C, H, W].
        generator: Random source on ``x.device``.
        p: Flip probability.

    Returns:
        Batch of the same shape and dtype.
    """
    _check_batch(x)
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < p
    return flip_where(x, flip)


def flip_where(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Flips left-right the images of ``x`` [N, C, H, W] where the bool mask ``flip`` [N] is set."""
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Zeroes one square per image, as DARTS's ``utils.Cutout`` (DeVries & Taylor, 2017).

    The centre ``(cy, cx)`` is a uniformly random pixel and the square covers rows
    ``[cy - length // 2, cy + length // 2)`` and likewise columns, clipped at the borders, so it
    is ``length x length`` (for even ``length``) when fully inside the image and smaller at the
    borders. Applied after normalization, so the square is the dataset mean.

    Args:
        x: Batch [N, C, H, W].
        length: Side of the square; 0 returns ``x`` unchanged.
        generator: Random source on ``x.device``.

    Returns:
        Batch of the same shape and dtype.
    """
    _check_batch(x)
    if length <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1), generator=generator, device=x.device)
    cx = torch.randint(0, w, (n, 1), generator=generator, device=x.device)
    return cutout_at(x, length, cy, cx)


def cutout_at(x: torch.Tensor, length: int, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
    """Zeroes the DARTS cutout square centred at ``(cy, cx)`` ([N, 1] each) of every image."""
    h, w = x.shape[-2:]
    half = length // 2
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    in_rows = (ys >= cy - half) & (ys < cy + half)  # [N, H]
    in_cols = (xs >= cx - half) & (xs < cx + half)  # [N, W]
    mask = in_rows[:, :, None] & in_cols[:, None, :]  # [N, H, W]
    return x.masked_fill(mask[:, None], 0)


class BatchAugment:
    """The data pipeline of one datamodule: training augmentation or plain normalization.

    Training mode: random crop and flip on the uint8 pixels, normalization, then cutout (the
    DARTS order). Evaluation mode: normalization only.

    Args:
        mean: Per-channel mean in [0, 1] pixel units.
        std: Per-channel standard deviation in [0, 1] pixel units.
        crop_padding: Zero padding of the random crop (0 = no crop).
        hflip: Whether to flip randomly.
        cutout: Cutout side length (0 = none).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 0,
        hflip: bool = False,
        cutout: int = 0,
    ) -> None:
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} entries but std has {len(std)}")
        if crop_padding < 0 or cutout < 0:
            raise ValueError(f"crop_padding={crop_padding} and cutout={cutout} must be >= 0")
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.crop_padding = int(crop_padding)
        self.hflip = bool(hflip)
        self.cutout = int(cutout)

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None, train: bool
    ) -> torch.Tensor:
        """Transforms a uint8 batch [N, C, H, W] into a float32 batch of the same shape.

        Args:
            x: uint8 pixels.
            generator: Random source on ``x.device``; only used (and required) when training.
            train: Augment (True) or only normalize (False).
        """
        if train and self.is_random:
            if generator is None:
                raise ValueError("training augmentation needs a generator on the batch's device")
            x = random_crop(x, self.crop_padding, generator)
            if self.hflip:
                x = random_hflip(x, generator)
        x = normalize(x, self.mean, self.std)
        if train and self.cutout > 0:
            x = cutout(x, self.cutout, generator)
        return x

    @property
    def is_random(self) -> bool:
        """Whether training mode draws random numbers at all."""
        return self.crop_padding > 0 or self.hflip or self.cutout > 0

    def __repr__(self) -> str:
        return (
            f"BatchAugment(mean={self.mean}, std={self.std}, crop_padding={self.crop_padding}, "
            f"hflip={self.hflip}, cutout={self.cutout})"
        )
