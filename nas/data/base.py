"""Types shared by the dataset readers and the registry (``datasets.py``), so that the readers
import no registry and the registry imports each reader only where it loads it."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
