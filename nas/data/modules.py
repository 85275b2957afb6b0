"""LightningDataModules for the search stage (train/val halves) and the retrain stage.

Two pipelines with the same augmentation semantics (``data.pipeline``):

* ``device`` (in-memory datasets): the whole split lives in one uint8 tensor, the sampler
  yields the indices of a batch and the dataset answers with one gather, so there is no
  per-sample work. When the trainer runs on an accelerator and ``data.device_cache`` is set,
  the tensors are moved to the device once in ``setup`` (if they fit), so batches are gathered
  there; otherwise batches travel as uint8 (4x less traffic than float). Either way they are
  augmented on the device in ``on_after_batch_transfer`` with a generator on that device.
* ``loader`` (image folders, or on request): per-sample decode and augmentation in DataLoader
  workers (``sample.py``), seeded per sample; batches arrive as normalized floats.

Token datasets (``data=text``) take the device pipeline with windows of a token stream
(``tokens.py``): splits by position, no augmentation, batches ``x`` int64 [B, T] and ``y``
int64 [B * T].

Determinism and resume: the batch order (and the per-sample seeds) come from CPU generators
seeded by the run seed; the device augmentation from a generator on the device. Training
batches carry a small ``(pass, position)`` tag that ``on_after_batch_transfer`` strips and
records, so ``state_dict`` knows exactly which batches reached the model, whatever the
prefetching: at an epoch boundary it saves the generators; mid-epoch it saves the state that
started the pass and the number of batches delivered, and a restored module replays the pass
and skips them. Single-device only: the samplers are not replaced by distributed samplers.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from torch.utils.data import DataLoader, Dataset

from nas.core.log import get_logger
from nas.data.augment import BatchAugment
from nas.data.base import ArraySplits
from nas.data.config import DataConfig, validate_data_config
from nas.data.datasets import is_file_dataset, is_token_dataset, load_dataset
from nas.data.sample import SampleDataset, SampleTransform
from nas.data.sampling import ResumableBatchSampler
from nas.data.splits import nb201_test_halves
from nas.data.text import TokenSplits
from nas.data.tokens import TokenWindows

log = get_logger(__name__)

# Independent random streams derived from the one run seed, so that e.g. the batch order and
# the crop offsets are not drawn from identical sequences.
_STREAMS = {"split": 0, "train": 1, "val": 2, "augment": 3}


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream of a run (via numpy's SeedSequence)."""
    state = np.random.SeedSequence([seed, _STREAMS[stream]]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


class IndexBatchDataset(Dataset):
    """Images and labels of one split, indexed by a whole batch of indices at once.

    Args:
        x: uint8 images [N, C, H, W] (or, for image folders, a list of file paths: a holder
            only, read by the per-sample pipeline).
        y: Labels [N].
    """

    def __init__(self, x: Any, y: torch.Tensor) -> None:
        if len(x) != y.shape[0]:
            raise ValueError(f"{len(x)} images but {y.shape[0]} labels")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: torch.Tensor) -> IndexBatchDataset:
        """The subset at ``index`` (materialized: batches then gather from contiguous memory)."""
        if isinstance(self.x, torch.Tensor):
            return IndexBatchDataset(self.x[index], self.y[index])
        return IndexBatchDataset([self.x[i] for i in index.tolist()], self.y[index])

    def to(self, device: torch.device) -> IndexBatchDataset:
        """Moves the tensors to ``device`` in place (the device pipeline's cache)."""
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def nbytes(self) -> int:
        return self.x.numel() * self.x.element_size() + self.y.numel() * self.y.element_size()

    def __getitem__(self, items: list) -> tuple:
        """A batch ``(x, y)`` for a list of indices, or ``(x, y, tag)`` for sampler items.

        Sampler items are ``(index, seed, pass, position)``; the tag is ``(pass, position)``.
        """
        tagged = bool(items) and isinstance(items[0], tuple)
        indices = [item[0] for item in items] if tagged else items
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.x.device)
        x, y = self.x[idx], self.y[idx]
        return (x, y, (items[0][2], items[0][3])) if tagged else (x, y)


def index_loader(
    dataset: IndexBatchDataset,
    batch_size: int,
    generator: torch.Generator | None,
    num_workers: int = 0,
) -> DataLoader:
    """A device-pipeline loader of ``(x, y)`` batches: shuffled with ``generator`` (tagged
    ``(x, y, tag)``), in order without one.

    Every pass over a shuffled loader draws a new permutation from ``generator``, so epochs
    differ while the whole sequence is fixed by the generator's seed.
    """
    sampler = ResumableBatchSampler(len(dataset), batch_size, generator)
    on_host = dataset.device.type == "cpu"
    return _Loader(
        dataset if generator is not None else _Untagged(dataset),
        sampler=sampler,
        batch_size=None,  # the sampler already yields whole batches of indices
        num_workers=num_workers if on_host else 0,
        persistent_workers=num_workers > 0 and on_host,
        pin_memory=torch.cuda.is_available() and on_host,
    )


class _Untagged(Dataset):
    """An evaluation view of a dataset: sampler items in, untagged ``(x, y)`` out."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, items: list) -> tuple:
        return self.dataset[[item[0] for item in items]]


# Plain DataLoaders on purpose: the data position lives in the datamodule's state_dict. Marking
# the loaders as Lightning-stateful (state_dict/load_state_dict on the loader) silences
# Lightning's "dataloader is not resumable" warning on mid-epoch resume but changed how
# Lightning restarts and broke bitwise-exact resume (tests/run/test_resume.py), so that warning is
# expected and harmless here.
_Loader = DataLoader


class _DataModule(L.LightningDataModule):
    """Shared parts: config, cached splits, seeded generators, both pipelines, resume."""

    def __init__(self, cfg: DataConfig, batch_size: int, seed: int, cutout: int = 0) -> None:
        super().__init__()
        validate_data_config(cfg)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.cfg = cfg
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.tokens = is_token_dataset(cfg.name)
        if self.tokens and cutout:
            log.info(f"cutout={cutout} (retrain.cutout) is an image augmentation: not applied "
                     f"to data={cfg.name}'s token windows")  # fmt: skip
            cutout = 0
        self.cutout = int(cutout)
        self.channels_last = False  # set by the builders with the model's memory format
        file_data = is_file_dataset(cfg.name)
        self.pipeline = "loader" if cfg.pipeline == "loader" or file_data else "device"
        self.augment = BatchAugment(
            mean=list(cfg.mean),
            std=list(cfg.std),
            crop_padding=cfg.crop_padding,
            hflip=cfg.hflip,
            cutout=cutout,
        )
        self._data: Any = None
        self.split_source: str | None = None  # where NB201's halves came from
        # CPU generators of the shuffling samplers; kept (not re-made per loader) so a restored
        # state continues the same sequence of epochs.
        self._sampler_gens = {
            name: torch.Generator().manual_seed(derive_seed(self.seed, name))
            for name in ("train", "val")
        }
        self._samplers: dict[str, ResumableBatchSampler] = {}
        self._pending_skip: dict[str, int] = {}
        self._delivered: dict[str, tuple[int, int]] = {}
        self._epoch_steps = (-1, 0)  # (epoch, training batches delivered in it)
        self._aug_gen: torch.Generator | None = None
        self._pending_aug_state: dict[str, Any] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one image; ``(T,)`` of one token window."""
        return tuple(int(s) for s in self.cfg.input_shape)

    @property
    def context(self) -> int:
        """Tokens per window (token datasets)."""
        return int(self.cfg.input_shape[0])

    def _token_windows(self, tokens: torch.Tensor, what: str, keys: str) -> TokenWindows:
        """The strided windows of ``tokens``, at least one (else an error naming ``keys``)."""
        windows = TokenWindows.strided(tokens, self.context)
        if not len(windows):
            raise ValueError(
                f"data={self.cfg.name}: the {what} has {tokens.numel()} tokens, fewer than one "
                f"window of data.input_shape=[{self.context}] + 1 tokens; change {keys}, a "
                "shorter context, or a longer corpus (data.path)"
            )
        return windows

    def token_info(self) -> dict[str, Any] | None:
        """What a token dataset's run read (summary.json): the corpus, tokenizer, the windows,
        and per split its tokens, windows and target bytes per target token."""
        if not self.tokens:
            return None
        self._require_setup()
        data: TokenSplits = self._data
        splits = {}
        for name, windows in self._named_windows().items():
            starts = windows.starts.cpu()
            targets = (starts[:, None] + 1 + torch.arange(self.context)).reshape(-1)
            nbytes = int(data.token_bytes[windows.stream.cpu()[targets]].sum())
            splits[name] = {
                "tokens": int(windows.stream.numel()),
                "windows": len(windows),
                "bytes_per_token": nbytes / max(1, targets.numel()),
            }
        return {
            **data.source,
            "tokenizer": data.tokenizer,
            "vocab_size": data.vocab_size,
            "context": self.context,
            "windows": "strided: start every context tokens, no overlap, none across a split "
            "boundary; training order shuffled per epoch by the run seed, evaluation in order",
            "splits": splits,
        }

    def _named_windows(self) -> dict[str, TokenWindows]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Number of labels."""
        return int(self.cfg.num_classes)

    def prepare_data(self) -> None:
        """Downloads (if allowed) and verifies the files; a no-op for in-package datasets."""
        if self._data is None and self.cfg.name not in ("digits", "synthetic"):
            self._data = load_dataset(self.cfg)

    def setup(self, stage: str | None = None) -> None:
        """Loads the data once, builds the splits and, on an accelerator, caches them there."""
        if not hasattr(self, "_splits"):
            validate_data_config(self.cfg)
            if self._data is None:
                self._data = load_dataset(self.cfg)
            self._build_splits(self._data)
            self._splits = True
            self._cache_on_device()

    def _build_splits(self, data: Any) -> None:
        raise NotImplementedError

    def _split_sets(self) -> list[IndexBatchDataset]:
        raise NotImplementedError

    def _nb201_halves(self, data: Any) -> tuple[IndexBatchDataset, IndexBatchDataset]:
        test = IndexBatchDataset(
            data.x_test if isinstance(data, ArraySplits) else data.test_files, data.y_test
        )
        xvalid, xtest, self.split_source = nb201_test_halves(
            self.cfg.name, self.cfg.root, data.y_test
        )
        return test.take(xvalid), test.take(xtest)

    def _cache_on_device(self) -> None:
        trainer = self._trainer
        if self.pipeline != "device" or not self.cfg.device_cache or trainer is None:
            return
        device = trainer.strategy.root_device
        if device.type == "cpu":
            return
        sets = self._split_sets()
        need = sum(s.nbytes for s in sets)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if need > free // 2:
                warnings.warn(
                    f"data.device_cache: {need / 2**20:.0f} MiB of data would take more than half "
                    f"of the {free / 2**20:.0f} MiB free on {device}; batches are copied per step",
                    stacklevel=2,
                )
                return
        for s in sets:
            s.to(device)

    def _require_setup(self) -> None:
        if not hasattr(self, "_splits"):
            self.setup()

    def _loader(
        self, split: IndexBatchDataset | TokenWindows, stream: str | None, train: bool
    ) -> DataLoader:
        """A loader of ``split``; ``stream`` names its shuffling generator (None = in order)."""
        generator = self._sampler_gens[stream] if stream is not None else None
        trainer = self._trainer
        distributed = train and trainer is not None and trainer.world_size > 1
        sampler = ResumableBatchSampler(
            len(split),
            self.batch_size,
            generator,
            sample_seeds=self.pipeline == "loader",
            rank=trainer.global_rank if distributed else 0,
            world_size=trainer.world_size if distributed else 1,
        )
        if stream is not None:
            self._samplers[stream] = sampler
            skip = self._pending_skip.pop(stream, 0)
            if skip:
                sampler.resume(generator.get_state(), skip)
        workers = self.cfg.num_workers
        if self.pipeline == "device":
            on_host = split.device.type == "cpu"
            return _Loader(
                split if stream is not None else _Untagged(split),
                sampler=sampler,
                batch_size=None,
                num_workers=workers if on_host else 0,
                persistent_workers=workers > 0 and on_host,
                pin_memory=torch.cuda.is_available() and on_host,
            )
        transform = SampleTransform(
            self.cfg.mean,
            self.cfg.std,
            train=train,
            crop_padding=self.cfg.crop_padding,
            hflip=self.cfg.hflip,
            cutout=self.cutout,
            size=self.input_shape[1:],
            eval_resize=self.cfg.eval_resize,
            crop_scale=list(self.cfg.crop_scale),
        )
        return _Loader(
            SampleDataset(split.x, split.y, transform, tagged=stream is not None),
            batch_sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

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
        trainer = self._trainer
        return bool(trainer.training) if trainer is not None else False

    def transform(self, batch: Any, train: bool, stream: str = "train") -> Any:
        """Turns ``(x, y)`` or ``{"train": (x, y), ...}`` into float images on their device.

        uint8 images (device pipeline) are augmented (``train``) or normalized; float images
        (loader pipeline) are already done. A training tag is recorded and stripped.
        """
        if isinstance(batch, dict):
            return {key: self.transform(value, train, key) for key, value in batch.items()}
        if len(batch) == 3:
            x, y, tag = batch
            if isinstance(tag, torch.Tensor) and tag.dim() == 2:  # collated per-sample tags
                tag = tag[0]
            self._delivered[stream] = (int(tag[0]), int(tag[1]))
        else:
            x, y = batch
        if x.dtype != torch.uint8:
            return x, y
        generator = self._augment_generator(x.device) if train and self.augment.is_random else None
        return self.augment(x, generator, train), y

    def first_batches(self, loader, n: int, device: torch.device) -> list:
        """The first ``n`` batches of ``loader`` on ``device``, normalised without augmentation
        (the fixed batches that selectors, proxies and candidate scoring all read)."""
        batches = []
        for batch in loader:
            batch = tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in batch)
            batches.append(self.transform(batch, train=False))
            if len(batches) >= n:
                break
        return batches

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning hook: augment (training) or normalize (evaluation) on the device."""
        train = self._is_training(batch)
        if train and self._trainer is not None:
            epoch, steps = self._epoch_steps
            current = self._trainer.current_epoch
            self._epoch_steps = (current, steps + 1 if epoch == current else 1)
        batch = self.transform(batch, train)
        return _to_channels_last(batch) if self.channels_last and not self.tokens else batch

    @property
    def _trainer(self) -> L.Trainer | None:
        try:
            return self.trainer
        except RuntimeError:
            return None

    # ----- checkpointing -----

    def _mid_epoch(self) -> bool:
        trainer = self._trainer
        if trainer is None:
            return False
        epoch, steps = self._epoch_steps
        total = trainer.num_training_batches
        return epoch == trainer.current_epoch and 0 < steps < total

    def state_dict(self) -> dict[str, Any]:
        """The data position: per sampler stream a generator state and batches to skip, and
        the augmentation generator's state (see the module docstring)."""
        mid_epoch = self._mid_epoch()
        streams: dict[str, dict[str, Any]] = {}
        for name, gen in self._sampler_gens.items():
            entry = {"state": gen.get_state(), "skip": self._pending_skip.get(name, 0)}
            sampler, delivered = self._samplers.get(name), self._delivered.get(name)
            if mid_epoch and sampler is not None and delivered is not None:
                record = sampler.records.get(delivered[0])
                if record is not None:
                    start, end, batches = record
                    done = delivered[1] + 1
                    entry = (
                        {"state": start, "skip": done}
                        if done < batches
                        else {"state": end, "skip": 0}
                    )
            streams[name] = entry
        state: dict[str, Any] = {"seed": self.seed, "streams": streams, "augment_generator": None}
        if self._aug_gen is not None:
            state["augment_generator"] = {
                "device_type": self._aug_gen.device.type,
                "state": self._aug_gen.get_state(),
            }
        elif self._pending_aug_state is not None:
            state["augment_generator"] = self._pending_aug_state
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores what ``state_dict`` saved; it applies to the next loaders and batches."""
        if state_dict.get("seed", self.seed) != self.seed:
            warnings.warn(
                f"restoring data state saved with seed {state_dict['seed']} into a run with "
                f"seed {self.seed}; the restored random streams win",
                stacklevel=2,
            )
        streams = state_dict.get("streams")
        if streams is None:  # older checkpoints: generator states at an epoch boundary
            streams = {
                k: {"state": s, "skip": 0}
                for k, s in state_dict.get("sampler_generators", {}).items()
            }
        for key, entry in streams.items():
            self._sampler_gens[key].set_state(entry["state"])
            self._pending_skip[key] = int(entry["skip"])
        aug = state_dict.get("augment_generator")
        self._aug_gen, self._pending_aug_state = None, aug


class SearchDataModule(_DataModule):
    """Bilevel search data: a weight half ("train") and an architecture half ("val").

    ``data.split=darts``: after a permutation seeded by the run seed, the first
    ``train_portion`` of the training set trains the weights and the rest the architecture.
    DARTS (Liu et al., 2019) splits the unpermuted index range and shuffles each half with
    SubsetRandomSampler; for CIFAR-10, whose files are already in random order, the two are
    equivalent in distribution. Both halves receive the training augmentation (crop/flip), as
    in DARTS. The test set is never touched. ``data.split=nb201``: NAS-Bench-201's search
    protocol for CIFAR-100 / ImageNet16-120: weights on the whole training set, α on the
    x-valid half of the test set (x-test is never touched).

    Args:
        cfg: The data settings.
        batch_size: Batch size of both halves.
        seed: Run seed (split permutation, batch order, augmentation).
    """

    def __init__(self, cfg: DataConfig, batch_size: int, seed: int) -> None:
        super().__init__(cfg, batch_size, seed, cutout=0)
        self.weight_set: IndexBatchDataset | None = None
        self.arch_set: IndexBatchDataset | None = None

    def _build_splits(self, data: Any) -> None:
        if isinstance(data, TokenSplits):
            self._token_splits(data)
            return
        images = data.x_train if isinstance(data, ArraySplits) else data.train_files
        train = IndexBatchDataset(images, data.y_train)
        if self.cfg.split == "nb201":
            self.weight_indices = torch.arange(len(train))
            self.arch_indices = None
            self.weight_set, _ = train, None
            self.arch_set, _ = self._nb201_halves(data)
            return
        n = len(train)
        split = int(math.floor(self.cfg.train_portion * n))
        if not 0 < split < n:
            raise ValueError(
                f"data.train_portion={self.cfg.train_portion} leaves an empty half of the "
                f"{n}-image training set; choose a value that keeps both halves non-empty"
            )
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "split"))
        perm = torch.randperm(n, generator=gen)
        self.weight_indices, self.arch_indices = perm[:split], perm[split:]
        self.weight_set = train.take(self.weight_indices)
        self.arch_set = train.take(self.arch_indices)

    def _token_splits(self, data: TokenSplits) -> None:
        """By position, never shuffled across the boundary: the training part's first
        ``train_portion`` of tokens trains the weights, the rest α."""
        n = data.train.numel()
        cut = int(math.floor(self.cfg.train_portion * n))
        keys = "data.train_portion"
        self.weight_set = self._token_windows(data.train[:cut], "search's weight part", keys)
        self.arch_set = self._token_windows(data.train[cut:], "search's α part", keys)
        self.weight_indices = torch.arange(cut)  # token positions in the training part
        self.arch_indices = torch.arange(cut, n)

    def _named_windows(self) -> dict[str, TokenWindows]:
        return {"train": self.weight_set, "val": self.arch_set}

    def _split_sets(self) -> list[IndexBatchDataset]:
        return [self.weight_set, self.arch_set]

    @property
    def split_sizes(self) -> dict[str, int]:
        """Images (token datasets: windows) in the weight ("train") and architecture ("val")
        halves."""
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
                "train": self._loader(self.weight_set, "train", train=True),
                "val": self._loader(self.arch_set, "val", train=True),
            },
            mode="max_size_cycle",
        )

    def val_dataloader(self) -> DataLoader:
        """The α half in order, without augmentation: the supernet's validation accuracy."""
        self._require_setup()
        return self._loader(self.arch_set, None, train=False)

    def _is_training(self, batch: Any) -> bool:
        # Dict batches only come from train_dataloader, so without a trainer they are training
        # batches; with one, its state decides as usual.
        if self._trainer is None:
            return isinstance(batch, dict)
        return super()._is_training(batch)


class RetrainDataModule(_DataModule):
    """Retraining from scratch: the full training set, evaluated on the test set.

    ``data.split=darts``: validation and test both use the whole official test set (the
    papers report the final epoch's test accuracy). ``data.split=nb201``: validation on
    NAS-Bench-201's x-valid half, test on its x-test half.

    Args:
        cfg: The data settings.
        batch_size: Batch size for training and evaluation.
        seed: Run seed (batch order, augmentation).
        cutout: Cutout side length for training batches (DARTS retrains with 16; 0 = none).
    """

    def __init__(self, cfg: DataConfig, batch_size: int, seed: int, cutout: int = 0) -> None:
        super().__init__(cfg, batch_size, seed, cutout=cutout)
        self.train_set: IndexBatchDataset | None = None
        self.val_set: IndexBatchDataset | None = None
        self.test_set: IndexBatchDataset | None = None

    def _build_splits(self, data: Any) -> None:
        if isinstance(data, TokenSplits):  # train on the training part, evaluate on the test
            self.train_set = self._token_windows(data.train, "training part", "data.test_fraction")
            self.test_set = self._token_windows(data.test, "test part", "data.test_fraction")
            self.val_set = self.test_set
            return
        arrays = isinstance(data, ArraySplits)
        self.train_set = IndexBatchDataset(
            data.x_train if arrays else data.train_files, data.y_train
        )
        if self.cfg.split == "nb201":
            self.val_set, self.test_set = self._nb201_halves(data)
        else:
            self.test_set = IndexBatchDataset(
                data.x_test if arrays else data.test_files, data.y_test
            )
            self.val_set = self.test_set

    def _named_windows(self) -> dict[str, TokenWindows]:
        return {"train": self.train_set, "test": self.test_set}

    def _split_sets(self) -> list[IndexBatchDataset]:
        sets = [self.train_set, self.val_set, self.test_set]
        return [s for i, s in enumerate(sets) if all(s is not t for t in sets[:i])]

    @property
    def num_train_batches(self) -> int:
        """Training steps per epoch."""
        self._require_setup()
        return math.ceil(len(self.train_set) / self.batch_size)

    def train_dataloader(self) -> DataLoader:
        """The training set, shuffled with the seeded generator and augmented."""
        self._require_setup()
        return self._loader(self.train_set, "train", train=True)

    def val_dataloader(self) -> DataLoader:
        """The test set (``split=nb201``: x-valid) in order."""
        self._require_setup()
        return self._loader(self.val_set, None, train=False)

    def test_dataloader(self) -> DataLoader:
        """The test set (``split=nb201``: x-test) in order."""
        self._require_setup()
        return self._loader(self.test_set, None, train=False)


def _to_channels_last(batch: Any) -> Any:
    """Images in NHWC memory order, matching a channels_last model (labels untouched)."""
    if isinstance(batch, dict):
        return {k: _to_channels_last(v) for k, v in batch.items()}
    x, *rest = batch
    return (x.contiguous(memory_format=torch.channels_last), *rest)
