"""A synthetic image classification task for smoke tests of every search method.

Each class has a fixed, spatially smooth prototype image (a low-resolution random pattern
upsampled to ``H x W``); a sample is its class prototype plus Gaussian pixel noise. The class
is therefore learnable by a small convnet within a few steps, yet not from a single pixel, and
the data cost no disk or network access.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nas.data.base import ArraySplits

# Fixed so that the synthetic task is the same for every run seed (like a real dataset).
GENERATOR_SEED = 0
NOISE_STD = 0.2  # in [0, 1] pixel units; prototypes span [0.2, 0.8], so mean ~0.5, std ~0.25


def _samples(
    prototypes: torch.Tensor, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws ``n`` class-balanced noisy copies of the prototypes as uint8 images."""
    num_classes = prototypes.shape[0]
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=generator)]
    noise = torch.randn((n, *prototypes.shape[1:]), generator=generator) * NOISE_STD
    images = (prototypes[labels] + noise).clamp(0, 1)
    return (images * 255).round().to(torch.uint8), labels.to(torch.int64)


def make_synthetic(
    num_samples: int = 512,
    input_shape: tuple[int, int, int] = (3, 8, 8),
    num_classes: int = 10,
    seed: int = GENERATOR_SEED,
) -> ArraySplits:
    """Generates the synthetic dataset.

    Args:
        num_samples: Training-set size; the test set has ``num_samples // 4`` images.
        input_shape: ``(C, H, W)`` of each image.
        num_classes: Number of classes (labels are balanced up to one sample).
        seed: Generator seed; the default makes every run see the same data.

    Returns:
        uint8 images ``[N, C, H, W]`` and int64 labels.
    """
    if num_samples < 4:
        raise ValueError(
            f"num_samples={num_samples} must be >= 4 so that the test set is non-empty"
        )
    channels, height, width = input_shape
    generator = torch.Generator().manual_seed(seed)
    # Low-resolution patterns give spatial structure that convolutions can exploit.
    low = (max(1, height // 4), max(1, width // 4))
    coarse = torch.rand((num_classes, channels, *low), generator=generator)
    prototypes = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    prototypes = 0.2 + 0.6 * prototypes
    x_train, y_train = _samples(prototypes, num_samples, generator)
    x_test, y_test = _samples(prototypes, num_samples // 4, generator)
    return ArraySplits(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
