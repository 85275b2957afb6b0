"""LightningDataModules for the search stage (train/val halves) and the retrain stage.

Loading is index-based: the whole split lives in one uint8 tensor, the sampler yields a list
of indices per batch and the dataset answers with one gather, so there is no per-sample
collation. Batches travel to the device as uint8 (4x less traffic than float) and are
augmented there in ``on_after_batch_transfer`` with a generator on that device.

Single-device only: the batch samplers are not replaced by distributed samplers.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from nas.data.augment import BatchAugment
from nas.data.config import DataConfig, validate_data_config
from nas.data.datasets import ArraySplits, load_arrays

# Independent random streams derived from the one run seed, so that e.g. the batch order and
# the crop offsets are not drawn from identical sequences.
_STREAMS = {"split": 0, "train": 1, "val": 2, "augment": 3}


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream of a run (via numpy's SeedSequence)."""
    state = np.random.SeedSequence([seed, _STREAMS[stream]]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


class IndexBatchDataset(Dataset):
    """Dataset of in-memory tensors indexed by a whole list of indices at once.

    Args:
        x: Images [N, ...].
        y: Labels [N].
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.x[idx], self.y[idx]


def index_loader(
    dataset: IndexBatchDataset,
    batch_size: int,
    generator: torch.Generator | None,
    num_workers: int = 0,
) -> DataLoader:
    """A loader yielding ``(x, y)`` batches: shuffled with ``generator``, in order without one.

    Every pass over a shuffled loader draws a new permutation from ``generator``, so epochs
    differ while the whole sequence is fixed by the generator's seed.
    """
    base = (
        RandomSampler(dataset, generator=generator)
        if generator is not None
        else SequentialSampler(dataset)
    )
    return DataLoader(
        dataset,
        sampler=BatchSampler(base, batch_size=batch_size, drop_last=False),
        batch_size=None,  # the sampler already yields whole batches of indices
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


class _ArrayDataModule(L.LightningDataModule):
    """Shared parts: config, cached arrays, seeded generators, device-side augmentation."""

    def __init__(self, cfg: DataConfig | Any, batch_size: int, seed: int, cutout: int = 0) -> None:
        super().__init__()
        validate_data_config(cfg)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.cfg = cfg
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.augment = BatchAugment(
            mean=list(cfg.mean),
            std=list(cfg.std),
            crop_padding=cfg.crop_padding,
            hflip=cfg.hflip,
            cutout=cutout,
        )
        self._arrays: ArraySplits | None = None
        # CPU generators of the shuffling samplers; kept (not re-made per loader) so a restored
        # state continues the same sequence of epochs.
        self._sampler_gens = {
            name: torch.Generator().manual_seed(derive_seed(self.seed, name))
            for name in ("train", "val")
        }
        self._aug_gen: torch.Generator | None = None
        self._pending_aug_state: dict[str, Any] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(int(s) for s in self.cfg.input_shape)

    @property
    def num_classes(self) -> int:
        """Number of labels."""
        return int(self.cfg.num_classes)

    def prepare_data(self) -> None:
        """Nothing to do: the supported datasets are local (download is not implemented)."""

    def setup(self, stage: str | None = None) -> None:
        """Loads the arrays once; later calls (one per Lightning stage) reuse them."""
        if self._arrays is None:
            validate_data_config(self.cfg)
            self._arrays = load_arrays(self.cfg)
            self._build_splits(self._arrays)

    def _build_splits(self, arrays: ArraySplits) -> None:
        raise NotImplementedError

    def _require_setup(self) -> None:
        if self._arrays is None:
            self.setup()

    def _loader(self, dataset: IndexBatchDataset, stream: str | None) -> DataLoader:
        generator = self._sampler_gens[stream] if stream is not None else None
        return index_loader(dataset, self.batch_size, generator, self.cfg.num_workers)

    # ----- augmentation on the device -----

    def _augment_generator(self, device: torch.device) -> torch.Generator:
        """The augmentation generator, created lazily on the batch's device."""
        if self._aug_gen is None or self._aug_gen.device != device:
            if self._aug_gen is not None:
                warnings.warn(
                    f"augmentation moved from {self._aug_gen.device} to {device}; reseeding it",
                    stacklevel=2,
                )
            self._aug_gen = torch.Generator(device=device)
            self._aug_gen.manual_seed(derive_seed(self.seed, "augment"))
            pending, self._pending_aug_state = self._pending_aug_state, None
            if pending is not None:
                if pending["device_type"] == device.type:
                    self._aug_gen.set_state(pending["state"])
                else:
                    warnings.warn(
                        f"augmentation state saved on {pending['device_type']} cannot be restored "
                        f"on {device.type}; the augmentation stream restarts from the seed",
                        stacklevel=2,
                    )
        return self._aug_gen

    def _is_training(self, batch: Any) -> bool:
        """Train-mode augmentation iff the attached trainer is in its training loop.

        Without a trainer (manual use), a batch is treated as an evaluation batch.
        """
        trainer = self.trainer
        return bool(trainer.training) if trainer is not None else False

    def transform(self, batch: Any, train: bool) -> Any:
        """Turns the uint8 images of ``(x, y)`` or ``{"train": (x, y), ...}`` into floats."""
        if isinstance(batch, dict):
            return {key: self.transform(value, train) for key, value in batch.items()}
        x, y = batch
        generator = self._augment_generator(x.device) if train and self.augment.is_random else None
        return self.augment(x, generator, train), y

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning hook: augment (training) or normalize (evaluation) on the device."""
        return self.transform(batch, self._is_training(batch))

    # ----- checkpointing -----

    def state_dict(self) -> dict[str, Any]:
        """Random states for exact resume: the samplers' and the augmentation generator's."""
        state: dict[str, Any] = {
            "seed": self.seed,
            "sampler_generators": {k: g.get_state() for k, g in self._sampler_gens.items()},
            "augment_generator": None,
        }
        if self._aug_gen is not None:
            state["augment_generator"] = {
                "device_type": self._aug_gen.device.type,
                "state": self._aug_gen.get_state(),
            }
        elif self._pending_aug_state is not None:
            state["augment_generator"] = self._pending_aug_state
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores what ``state_dict`` saved; the augmentation state applies lazily."""
        if state_dict.get("seed", self.seed) != self.seed:
            warnings.warn(
                f"restoring data state saved with seed {state_dict['seed']} into a run with "
                f"seed {self.seed}; the restored random streams win",
                stacklevel=2,
            )
        for key, gen_state in state_dict.get("sampler_generators", {}).items():
            self._sampler_gens[key].set_state(gen_state)
        aug = state_dict.get("augment_generator")
        self._aug_gen, self._pending_aug_state = None, aug


class SearchDataModule(_ArrayDataModule):
    """Bilevel search data: the training set split into a weight half and an α half.

    After a permutation seeded by the run seed, the first ``train_portion`` of the training
    set trains the weights ("train") and the rest the architecture ("val"). DARTS (Liu et al.,
    2019) splits the unpermuted index range and shuffles each half with SubsetRandomSampler;
    for CIFAR-10, whose files are already in random order, the two are equivalent in
    distribution. Both halves receive the training augmentation (crop/flip), as in DARTS.
    The test set is never touched here.

    Args:
        cfg: Data config.
        batch_size: Batch size of both halves.
        seed: Run seed (split permutation, batch order, augmentation).
    """

    def __init__(self, cfg: DataConfig | Any, batch_size: int, seed: int) -> None:
        super().__init__(cfg, batch_size, seed, cutout=0)
        self.weight_set: IndexBatchDataset | None = None
        self.arch_set: IndexBatchDataset | None = None

    def _build_splits(self, arrays: ArraySplits) -> None:
        n = arrays.x_train.shape[0]
        split = int(math.floor(self.cfg.train_portion * n))
        if not 0 < split < n:
            raise ValueError(
                f"data.train_portion={self.cfg.train_portion} leaves an empty half of the "
                f"{n}-image training set; choose a value that keeps both halves non-empty"
            )
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "split"))
        perm = torch.randperm(n, generator=gen)
        self.weight_indices, self.arch_indices = perm[:split], perm[split:]
        # Materialized copies so that each batch is a single gather from contiguous memory.
        self.weight_set = IndexBatchDataset(
            arrays.x_train[self.weight_indices], arrays.y_train[self.weight_indices]
        )
        self.arch_set = IndexBatchDataset(
            arrays.x_train[self.arch_indices], arrays.y_train[self.arch_indices]
        )

    @property
    def split_sizes(self) -> dict[str, int]:
        """Images in the weight ("train") and architecture ("val") halves."""
        self._require_setup()
        return {"train": len(self.weight_set), "val": len(self.arch_set)}

    @property
    def num_train_batches(self) -> int:
        """Steps per search epoch: the longer half's batch count (the shorter one cycles)."""
        return max(math.ceil(size / self.batch_size) for size in self.split_sizes.values())

    def train_dataloader(self) -> CombinedLoader:
        """Yields ``{"train": (x, y), "val": (x, y)}``; the shorter half cycles within an epoch."""
        self._require_setup()
        return CombinedLoader(
            {
                "train": self._loader(self.weight_set, "train"),
                "val": self._loader(self.arch_set, "val"),
            },
            mode="max_size_cycle",
        )

    def val_dataloader(self) -> DataLoader:
        """The α half in order, without augmentation: the supernet's validation accuracy."""
        self._require_setup()
        return self._loader(self.arch_set, None)

    def _is_training(self, batch: Any) -> bool:
        # Dict batches only come from train_dataloader, so without a trainer they are training
        # batches; with one, its state decides as usual.
        if self.trainer is None:
            return isinstance(batch, dict)
        return super()._is_training(batch)


class RetrainDataModule(_ArrayDataModule):
    """Retraining from scratch: the full training set, evaluated on the test set.

    Args:
        cfg: Data config.
        batch_size: Batch size for training and evaluation.
        seed: Run seed (batch order, augmentation).
        cutout: Cutout side length for training batches (DARTS retrains with 16; 0 = none).
    """

    def __init__(self, cfg: DataConfig | Any, batch_size: int, seed: int, cutout: int = 0) -> None:
        super().__init__(cfg, batch_size, seed, cutout=cutout)
        self.train_set: IndexBatchDataset | None = None
        self.test_set: IndexBatchDataset | None = None

    def _build_splits(self, arrays: ArraySplits) -> None:
        self.train_set = IndexBatchDataset(arrays.x_train, arrays.y_train)
        self.test_set = IndexBatchDataset(arrays.x_test, arrays.y_test)

    @property
    def num_train_batches(self) -> int:
        """Training steps per epoch."""
        self._require_setup()
        return math.ceil(len(self.train_set) / self.batch_size)

    def train_dataloader(self) -> DataLoader:
        """The training set, shuffled with the seeded generator; augmented on the device."""
        self._require_setup()
        return self._loader(self.train_set, "train")

    def val_dataloader(self) -> DataLoader:
        """The test set in order (the papers report test accuracy of the final epoch)."""
        self._require_setup()
        return self._loader(self.test_set, None)

    def test_dataloader(self) -> DataLoader:
        """The test set in order."""
        self._require_setup()
        return self._loader(self.test_set, None)
