"""The 8x8 handwritten digits bundled with scikit-learn (UCI optdigits test part).

1797 grayscale images with pixel values 0..16 and 10 classes. The data ships inside the
scikit-learn wheel, so this dataset needs neither network nor disk setup: it is the default
for fast end-to-end runs and tests.
"""

from __future__ import annotations

import numpy as np
import torch

from nas.data.base import ArraySplits

# Fixed on purpose and independent of the run seed: every run and every seed must be scored
# on the same held-out test set, as with an official test split.
SPLIT_SEED = 0


def load_digits_splits(test_fraction: float = 0.2, split_seed: int = SPLIT_SEED) -> ArraySplits:
    """Loads the digits as uint8 ``[N, 1, 8, 8]`` with a stratified held-out test split.

    Args:
        test_fraction: Fraction of the 1797 images held out for testing, in (0, 1).
        split_seed: Seed of the stratified split; keep the default to compare runs.

    Returns:
        Train and test tensors; pixels are scaled from 0..16 to 0..255 by ``round(v * 255 / 16)``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must lie in the open interval (0, 1)")
    bunch = load_digits()
    pixels = np.rint(bunch.data * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        pixels, labels, test_size=test_fraction, stratify=labels, random_state=split_seed
    )
    return ArraySplits(
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_train)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_test)),
    )
