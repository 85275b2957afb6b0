"""Tests of nas/data: readers, splits, seeded loaders, device-side augmentation, configs."""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import pytest
import torch

from nas.data import (
    BatchAugment,
    DataConfig,
    RetrainDataModule,
    SearchDataModule,
    cutout,
    dataset_names,
    load_arrays,
    normalize,
    random_crop,
    random_hflip,
    validate_data_config,
)
from nas.data.digits import load_digits_splits
from nas.data.synthetic import make_synthetic

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def digits_cfg(**overrides) -> DataConfig:
    cfg = DataConfig(
        name="digits",
        input_shape=[1, 8, 8],
        num_classes=10,
        mean=[0.3053],
        std=[0.3760],
        crop_padding=1,
    )
    return dataclasses.replace(cfg, **overrides)


# ----- configs -----


def _compose(config_dir: Path, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    ConfigStore.instance().store(group="data", name="base_data", node=DataConfig)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(overrides=overrides)


@pytest.mark.parametrize(
    "name",
    ["digits", "synthetic", "cifar10", "cifar100", "imagenet16_120", "imagefolder", "imagenet"],
)
def test_yaml_composes_against_schema(name, monkeypatch):
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    monkeypatch.setenv("NAS_DATA_ROOT", "/datasets")
    cfg = _compose(CONF_DIR, [f"+data={name}"]).data
    validate_data_config(OmegaConf.to_object(cfg))  # the dataclass nas.run hands the data room
    assert cfg.name == name
    assert len(cfg.mean) == len(cfg.std) == cfg.input_shape[0]
    if name.startswith("cifar"):
        assert OmegaConf.to_container(cfg, resolve=True)["root"] == f"/datasets/{name}"
    with pytest.raises(ConfigCompositionException, match="trian_portion"):
        _compose(CONF_DIR, [f"+data={name}", "data.trian_portion=0.3"])
    with pytest.raises(ConfigCompositionException):  # typed schema: a string is not a float
        _compose(CONF_DIR, [f"+data={name}", "data.train_portion=half"])


def test_yaml_typo_fails_at_compose(tmp_path):
    from hydra.errors import ConfigCompositionException

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "typo.yaml").write_text(
        "defaults:\n  - base_data\n  - _self_\nname: digits\ntrian_portion: 0.3\n"
    )
    with pytest.raises(ConfigCompositionException, match="trian_portion"):
        _compose(tmp_path, ["+data=typo"])


def test_digits_yaml_stats_match_data():
    from sklearn.datasets import load_digits

    pixels = load_digits().data / 16.0
    assert abs(pixels.mean() - 0.3053) < 1e-4 and abs(pixels.std() - 0.3760) < 1e-4


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"train_portion": 1.0}, "train_portion=1.0"),
        ({"test_fraction": 0.0}, "test_fraction=0.0"),
        ({"mean": [0.5, 0.5]}, "data.mean has 2 entries"),
        ({"std": [0.0]}, "data.std=[0.0]"),
        ({"input_shape": [8, 8]}, "input_shape=[8, 8]"),
        ({"name": "mnist"}, "'mnist' is not a known dataset"),
        ({"split": "nb201"}, "data.split=nb201 needs cifar100"),
        ({"pipeline": "gpu"}, "data.pipeline='gpu'"),
        ({"crop_padding": -1}, "crop_padding=-1"),
    ],
)
def test_validate_rejects_bad_values(overrides, needle):
    with pytest.raises(ValueError) as info:
        validate_data_config(digits_cfg(**overrides))
    assert needle in str(info.value)


def test_load_arrays_unknown_name_lists_valid_names():
    cfg = digits_cfg()
    object.__setattr__(cfg, "name", "mnist")
    with pytest.raises(ValueError, match="mnist") as info:
        load_arrays(cfg)
    for valid in dataset_names():
        assert valid in str(info.value)


# ----- readers -----


def test_digits_split_is_stratified_and_fixed():
    arrays = load_digits_splits(test_fraction=0.2)
    assert arrays.x_train.shape[0] + arrays.x_test.shape[0] == 1797
    assert arrays.x_test.shape[0] == math.ceil(0.2 * 1797)
    assert arrays.x_train.dtype == torch.uint8 and arrays.x_train.shape[1:] == (1, 8, 8)
    assert arrays.y_train.dtype == torch.int64 and int(arrays.x_train.max()) == 255
    all_labels = torch.cat([arrays.y_train, arrays.y_test])
    assert all_labels.unique().tolist() == list(range(10))
    expected = all_labels.bincount().double() * 0.2
    assert (arrays.y_test.bincount().double() - expected).abs().max() <= 1
    # The test set does not depend on the run seed.
    tests = []
    for seed in (0, 1):
        module = RetrainDataModule(digits_cfg(), batch_size=32, seed=seed)
        module.setup()
        tests.append((module.test_set.x, module.test_set.y))
    assert torch.equal(tests[0][0], tests[1][0]) and torch.equal(tests[0][1], tests[1][1])
    assert torch.equal(tests[0][0], arrays.x_test)


def test_synthetic_is_deterministic_and_balanced():
    a, b = make_synthetic(40, (3, 8, 8), 10), make_synthetic(40, (3, 8, 8), 10)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (40, 3, 8, 8) and a.x_test.shape == (10, 3, 8, 8)
    assert a.y_train.bincount().tolist() == [4] * 10


# ----- augmentation -----


def test_normalize_matches_formula():
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    out = normalize(x, mean, std)
    ref = (x.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    assert out.dtype == torch.float32 and torch.allclose(out.double(), ref, atol=1e-5)


def test_random_crop_is_a_shifted_padded_image():
    n, p = 64, 2
    x = torch.randint(1, 256, (n, 2, 6, 7), dtype=torch.uint8)  # no zeros: matches are unique
    out = random_crop(x, p, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = set()
    for i in range(n):  # naive reference: some offset in [0, 2p]^2 reproduces each image
        hits = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 7])
        ]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 10
    assert {dy for dy, _ in offsets} == {dx for _, dx in offsets} == set(range(2 * p + 1))
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)
    again = random_crop(x, p, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_random_hflip_flips_some_images():
    x = torch.randn(64, 3, 4, 5)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


@pytest.mark.parametrize("length", [3, 4, 16])
def test_cutout_zeroes_one_clipped_square(length):
    n, h, w = 48, 8, 9
    x = torch.ones(n, 2, h, w)
    out = cutout(x, length, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and torch.equal(out[:, 0], out[:, 1])
    half = length // 2
    full_squares = 0
    for i in range(n):
        zero = out[i, 0] == 0
        # Naive reference: a DARTS square centred at some pixel, clipped at the borders.
        matches = []
        for cy in range(h):
            for cx in range(w):
                ref = torch.zeros(h, w, dtype=torch.bool)
                ref[
                    max(cy - half, 0) : min(cy + half, h), max(cx - half, 0) : min(cx + half, w)
                ] = 1
                matches.append(torch.equal(zero, ref))
        assert any(matches)
        rows, cols = zero.any(1).sum().item(), zero.any(0).sum().item()
        assert rows <= 2 * half and cols <= 2 * half and zero.sum() == rows * cols
        full_squares += rows == cols == 2 * half
    if length < h:
        assert full_squares > 0


def test_batch_augment_train_and_eval():
    aug = BatchAugment([0.5], [0.25], crop_padding=1, hflip=True, cutout=2)
    x = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(aug(x, None, train=False), normalize(x, [0.5], [0.25]))
    out = aug(x, torch.Generator().manual_seed(0), train=True)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert not torch.equal(out, normalize(x, [0.5], [0.25]))


# ----- datamodules -----


def _first_batch(module: SearchDataModule):
    batch, _, _ = next(iter(module.train_dataloader()))
    return batch


@pytest.mark.parametrize("portion", [0.5, 0.3])
def test_search_split_sizes(portion):
    module = SearchDataModule(digits_cfg(train_portion=portion), batch_size=64, seed=0)
    module.setup()
    n = 1797 - 360
    assert module.split_sizes == {"train": int(portion * n), "val": n - int(portion * n)}
    both = torch.cat([module.weight_indices, module.arch_indices]).sort().values
    assert torch.equal(both, torch.arange(n))


def test_search_batches_seeded():
    first = [_first_batch(SearchDataModule(digits_cfg(), 32, seed)) for seed in (0, 0, 1)]
    for half in ("train", "val"):
        assert torch.equal(first[0][half][0], first[1][half][0])
        assert torch.equal(first[0][half][1], first[1][half][1])
        assert not torch.equal(first[0][half][1], first[2][half][1])


def test_search_epoch_without_lightning():
    module = SearchDataModule(digits_cfg(train_portion=0.3), batch_size=100, seed=0)
    module.setup()
    steps = 0
    for batch, batch_idx, _ in module.train_dataloader():
        assert batch_idx == steps
        batch = module.on_after_batch_transfer(batch, 0)
        assert set(batch) == {"train", "val"}
        for x, y in batch.values():
            assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8) and y.dtype == torch.int64
        steps += 1
    # max_size_cycle: as many steps as the longer (α) half needs; the weight half cycles.
    assert steps == module.num_train_batches == math.ceil(module.split_sizes["val"] / 100)
    x, _ = next(iter(module.val_dataloader()))
    out, _ = module.on_after_batch_transfer((x, None), 0)  # plain tuple: evaluation mode
    assert torch.equal(out, normalize(x, [0.3053], [0.3760]))


def test_state_dict_restores_random_streams():
    a = SearchDataModule(digits_cfg(), batch_size=64, seed=3)
    for _ in a.train_dataloader():  # one full epoch advances the samplers
        pass
    batch, _, _ = next(iter(a.train_dataloader()))
    a.transform(batch, train=True)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    b = SearchDataModule(digits_cfg(), batch_size=64, seed=3)
    b.load_state_dict(state)
    out_a, out_b = a.transform(batch, train=True), b.transform(batch, train=True)
    assert torch.equal(out_a["train"][0], out_b["train"][0])
    next_a, _, _ = next(iter(a.train_dataloader()))
    next_b, _, _ = next(iter(b.train_dataloader()))
    assert torch.equal(next_a["val"][1], next_b["val"][1])


def test_retrain_module_and_lightning_hook():
    import lightning as L

    module = RetrainDataModule(digits_cfg(), batch_size=128, seed=0, cutout=4)
    module.setup()
    assert module.input_shape == (1, 8, 8) and module.num_classes == 10
    assert len(module.test_dataloader()) == math.ceil(360 / 128)
    seen = {}

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(64, 10)

        def training_step(self, batch, batch_idx):
            x, y = batch
            seen["train"] = x
            return torch.nn.functional.cross_entropy(self.linear(x.flatten(1)), y)

        def validation_step(self, batch, batch_idx):
            seen["val"] = batch[0]

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Probe(), datamodule=module)
    assert seen["train"].dtype == torch.float32 and seen["val"].dtype == torch.float32
    # Validation batches are normalized test images, nothing else.
    x_test = module.test_set.x[:128]
    assert torch.equal(seen["val"], normalize(x_test, [0.3053], [0.3760]))
    # Training batches carry cutout squares: the normalized value of a zero-after-norm pixel.
    assert (seen["train"] == 0).any()


def test_search_resume_through_lightning_is_exact(tmp_path):
    """Batches of epoch 2 are identical whether run straight or resumed from epoch 1."""
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self, log):
            super().__init__()
            self.automatic_optimization = False
            self.linear = torch.nn.Linear(64, 10)
            self.log_ = log

        def training_step(self, batch, batch_idx):
            x, y = batch["train"]
            assert x.dtype == batch["val"][0].dtype == torch.float32
            self.log_.append((self.current_epoch, y.tolist(), x.sum().item()))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(epochs, root, ckpt=None):
        log = []
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
            callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True)],
        )
        module = SearchDataModule(digits_cfg(), batch_size=512, seed=0)
        trainer.fit(Probe(log), datamodule=module, ckpt_path=ckpt)
        return log

    straight = fit(2, tmp_path / "a")
    fit(1, tmp_path / "b")
    resumed = fit(2, tmp_path / "b", ckpt=str(tmp_path / "b" / "last.ckpt"))
    assert resumed and resumed == [entry for entry in straight if entry[0] == 1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_augmentation_on_cuda_is_seeded_and_restorable():
    device = torch.device("cuda")
    x = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    batch = {"train": (x.to(device), torch.zeros(64, dtype=torch.long, device=device))}
    batch["val"] = batch["train"]
    a, b = (RetrainDataModule(digits_cfg(), 64, seed=5, cutout=4) for _ in range(2))
    search = SearchDataModule(digits_cfg(), 64, seed=5)
    out = search.on_after_batch_transfer(batch, 0)  # no trainer: dict batches are training
    assert out["train"][0].device.type == "cuda" and out["train"][0].dtype == torch.float32
    assert search.state_dict()["augment_generator"]["device_type"] == "cuda"
    first_a = a.transform(batch["train"], train=True)[0]
    assert torch.equal(first_a, b.transform(batch["train"], train=True)[0])
    b.load_state_dict(a.state_dict())
    assert torch.equal(
        a.transform(batch["train"], train=True)[0], b.transform(batch["train"], train=True)[0]
    )
    evaluated = a.transform(batch["train"], train=False)[0]
    assert torch.allclose(evaluated.cpu(), normalize(x, [0.3053], [0.3760]))
    # Crop on the GPU still yields shifted copies of the padded images.
    crop = random_crop(x.to(device), 1, torch.Generator(device=device).manual_seed(0)).cpu()
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(8):
        assert any(
            torch.equal(crop[i], padded[i, :, dy : dy + 8, dx : dx + 8])
            for dy in range(3)
            for dx in range(3)
        )
