"""Datasets, search/retrain splits and device-side augmentation (ARCHITECTURE.md, the rooms)."""

from __future__ import annotations

from nas.data.augment import BatchAugment, cutout, normalize, random_crop, random_hflip
from nas.data.base import ArraySplits
from nas.data.config import DataConfig, validate_data_config
from nas.data.datasets import (
    dataset_names,
    is_file_dataset,
    load_arrays,
    load_dataset,
    register_dataset,
)
from nas.data.modules import (
    IndexBatchDataset,
    RetrainDataModule,
    SearchDataModule,
    derive_seed,
    index_loader,
)

__all__ = [
    "ArraySplits",
    "BatchAugment",
    "DataConfig",
    "IndexBatchDataset",
    "RetrainDataModule",
    "SearchDataModule",
    "cutout",
    "dataset_names",
    "derive_seed",
    "index_loader",
    "is_file_dataset",
    "load_arrays",
    "load_dataset",
    "normalize",
    "random_crop",
    "random_hflip",
    "register_dataset",
    "validate_data_config",
]
