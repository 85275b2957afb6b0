"""NAS-Bench-201's valid/test halves of the official test set (Dong & Yang, ICLR 2020).

For CIFAR-100 and ImageNet16-120, NAS-Bench-201 splits the original test set into two halves:
``x-valid`` (validation accuracy, also the α data of its search runs) and ``x-test`` (reported
test accuracy). Its split files ``cifar100-test-split.txt`` and
``imagenet-16-120-test-split.txt`` (JSON with ``xvalid`` and ``xtest`` index lists; NB201's
config format writes each as ``["int", [indices]]``, which is accepted too) are used when found
in ``data.root``. Otherwise the halves are a fixed, seeded split, stratified by class: each
class's test images are permuted with ``SPLIT_SEED`` and the first half of each class goes to
``xvalid``. The seed is fixed (not the run seed), so every run scores on the same halves.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPLIT_SEED = 0
SPLIT_FILES = {
    "cifar100": "cifar100-test-split.txt",
    "imagenet16_120": "imagenet-16-120-test-split.txt",
}


def _indices(value: object, key: str, path: Path) -> list[int]:
    if isinstance(value, list) and len(value) == 2 and value[0] == "int":
        value = value[1]  # NB201 config format: ["int", [...]]
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise ValueError(f"split file {path}: {key!r} must be a list of ints")
    return value


def load_split_file(path: Path, num_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reads an NB201 split file and checks its halves are disjoint indices of the test set."""
    try:
        content = json.loads(path.read_text())
        halves = [_indices(content[key], key, path) for key in ("xvalid", "xtest")]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(
            f"split file {path} is not JSON with 'xvalid' and 'xtest' index lists ({err})"
        ) from err
    xvalid, xtest = (torch.tensor(h, dtype=torch.long) for h in halves)
    both = torch.cat([xvalid, xtest])
    if both.numel() and (int(both.min()) < 0 or int(both.max()) >= num_test):
        raise ValueError(f"split file {path} has indices outside 0..{num_test - 1}")
    if both.unique().numel() != both.numel():
        raise ValueError(f"split file {path}: xvalid and xtest overlap or repeat indices")
    return xvalid, xtest


def seeded_halves(
    labels: torch.Tensor, seed: int = SPLIT_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified half split of a test set: ``(xvalid, xtest)`` sorted index tensors.

    Each class's indices are permuted with ``seed``; the first ``floor(n_c / 2)`` go to xvalid.
    """
    gen = torch.Generator().manual_seed(seed)
    valid, test = [], []
    for c in labels.unique(sorted=True).tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        half = idx.numel() // 2
        valid.append(idx[:half])
        test.append(idx[half:])
    return torch.cat(valid).sort().values, torch.cat(test).sort().values


def nb201_test_halves(
    name: str, root: str | Path | None, test_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """NB201's ``(xvalid, xtest, source)`` for dataset ``name``.

    Args:
        name: ``cifar100`` or ``imagenet16_120``.
        root: ``data.root``; its split file is used when present.
        test_labels: Labels of the official test set (stratifies the seeded split).

    Returns:
        Index tensors into the test set and where they came from (the file or ``seeded``).
    """
    if name not in SPLIT_FILES:
        raise ValueError(
            f"data.split=nb201 defines valid/test halves only for {sorted(SPLIT_FILES)}, not "
            f"{name!r}; use data.split=darts"
        )
    if root is not None:
        path = Path(root).expanduser() / SPLIT_FILES[name]
        if path.is_file():
            xvalid, xtest = load_split_file(path, test_labels.numel())
            return xvalid, xtest, str(path)
    xvalid, xtest = seeded_halves(test_labels)
    return xvalid, xtest, f"seeded (seed {SPLIT_SEED}, stratified)"
