"""The on-device batch pipeline and the per-sample DataLoader pipeline agree; seeded runs
repeat; a mid-epoch resume continues with the batches a straight run sees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nas.data import DataConfig, RetrainDataModule, SearchDataModule
from nas.data.augment import crop_at, cutout_at, flip_where, normalize
from nas.data.sample import SampleTransform

MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


def synthetic_cfg(**overrides) -> DataConfig:
    cfg = DataConfig(
        name="synthetic",
        input_shape=[3, 8, 8],
        num_classes=10,
        mean=MEAN,
        std=STD,
        crop_padding=2,
        hflip=True,
        num_samples=96,
    )
    return dataclasses.replace(cfg, **overrides)


class _Replay:
    """A generator stand-in for SampleTransform that replays fixed draws (crop, flip, cutout)."""


def _per_sample_reference(x, p, dy, dx, flip, cy, cx, length):
    """SampleTransform's slicing path with the given draws, by patching torch.randint/rand."""
    t = SampleTransform(MEAN, STD, train=True, crop_padding=p, hflip=True, cutout=length)
    draws = iter([torch.tensor([dy, dx]), torch.tensor([cy]), torch.tensor([cx])])
    flips = iter([torch.tensor([0.0 if flip else 0.9])])
    real_randint, real_rand = torch.randint, torch.rand
    torch.randint = lambda *a, **k: next(draws)
    torch.rand = lambda *a, **k: next(flips)
    try:
        return t(x, seed=0)
    finally:
        torch.randint, torch.rand = real_randint, real_rand


def test_same_draws_give_same_images():
    """Batched gathers (device path) == per-sample slicing (loader path) for the same draws."""
    gen = torch.Generator().manual_seed(0)
    n, p, length = 24, 3, 4
    x = torch.randint(0, 256, (n, 3, 9, 7), dtype=torch.uint8, generator=gen)
    offsets = torch.randint(0, 2 * p + 1, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    cy = torch.randint(0, 9, (n, 1), generator=gen)
    cx = torch.randint(0, 7, (n, 1), generator=gen)
    batched = cutout_at(
        normalize(flip_where(crop_at(x, p, offsets), flips), MEAN, STD), length, cy, cx
    )
    for i in range(n):
        ref = _per_sample_reference(
            x[i], p, *offsets[i].tolist(), bool(flips[i]), int(cy[i]), int(cx[i]), length
        )
        assert torch.allclose(batched[i], ref, atol=1e-6), i


def _crop_offset(out: torch.Tensor, x: torch.Tensor, p: int) -> tuple[int, int, bool]:
    """Recovers (dy, dx, flipped) of an augmented uint8 image (x has no zero pixels)."""
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    h, w = x.shape[-2:]
    for flipped in (False, True):
        img = out.flip(-1) if flipped else out
        for dy in range(2 * p + 1):
            for dx in range(2 * p + 1):
                if torch.equal(img, padded[:, dy : dy + h, dx : dx + w]):
                    return dy, dx, flipped
    raise AssertionError("not a crop of the padded image")


def test_offset_and_flip_statistics_agree():
    """Over many samples both paths draw crop offsets uniformly in [0, 2p] and flip half."""
    p, n = 2, 600
    x = torch.randint(1, 256, (1, 3, 6, 6), dtype=torch.uint8).expand(n, 3, 6, 6).contiguous()
    x[:, 0, 0, 0] = torch.arange(n) % 200 + 1  # distinct images, so flips are detectable
    x[:, 1, 2, 5] = 255
    from nas.data.augment import random_crop, random_hflip

    gen = torch.Generator().manual_seed(1)
    device_out = random_hflip(random_crop(x, p, gen), gen)
    sample = SampleTransform([0] * 3, [1] * 3, train=True, crop_padding=p, hflip=True)
    seeds = torch.randint(0, 2**62, (n,), generator=torch.Generator().manual_seed(2)).tolist()
    loader_out = [
        sample.geometry(x[i], torch.Generator().manual_seed(s)) for i, s in enumerate(seeds)
    ]
    stats = {}
    for name, outs in (("device", device_out), ("loader", loader_out)):
        found = np.array([_crop_offset(outs[i], x[i], p) for i in range(n)])
        counts = np.bincount(found[:, :2].ravel(), minlength=2 * p + 1) / (2 * n)
        stats[name] = (counts, found[:, 2].mean())
        # Uniform offsets: each of the 5 values ~ 20% (binomial sd ~1.2%); flip rate ~ 50%.
        assert np.abs(counts - 1 / (2 * p + 1)).max() < 0.05, (name, counts)
        assert abs(found[:, 2].mean() - 0.5) < 0.07, name
    assert np.abs(stats["device"][0] - stats["loader"][0]).max() < 0.06


def test_loader_and_device_pipelines_match_in_eval_and_distribution():
    dev = RetrainDataModule(synthetic_cfg(), batch_size=32, seed=0, cutout=4)
    per = RetrainDataModule(synthetic_cfg(pipeline="loader"), batch_size=32, seed=0, cutout=4)
    assert (dev.pipeline, per.pipeline) == ("device", "loader")
    x_dev, y_dev = dev.transform(next(iter(dev.test_dataloader())), train=False)
    x_per, y_per = next(iter(per.test_dataloader()))
    assert torch.allclose(x_dev, x_per, atol=1e-6) and torch.equal(y_dev, y_per)
    # Training: same batch order (same sampler stream); same per-image value statistics.
    b_dev = next(iter(dev.train_dataloader()))
    b_per = next(iter(per.train_dataloader()))
    assert torch.equal(b_dev[1], b_per[1])
    out_dev, _ = dev.transform(b_dev, train=True)
    out_per, _ = per.transform(b_per, train=True)
    assert out_dev.shape == out_per.shape and out_per.dtype == torch.float32
    zero_dev = (out_dev == 0).all(1).float().mean()  # cutout + padding share of pixels
    zero_per = (out_per == 0).all(1).float().mean()
    assert abs(zero_dev - zero_per) < 0.1


@pytest.mark.parametrize("pipeline", ["device", "loader"])
def test_same_seed_same_batches(pipeline):
    def first_two(seed):
        module = SearchDataModule(synthetic_cfg(pipeline=pipeline), batch_size=16, seed=seed)
        it = iter(module.train_dataloader())
        return [module.transform(next(it)[0], train=True) for _ in range(2)]

    a, b, c = first_two(0), first_two(0), first_two(1)
    for step in range(2):
        for half in ("train", "val"):
            assert torch.equal(a[step][half][0], b[step][half][0])
            assert torch.equal(a[step][half][1], b[step][half][1])
    assert not torch.equal(a[0]["train"][0], c[0]["train"][0])


@pytest.mark.parametrize("pipeline", ["device", "loader"])
def test_mid_epoch_resume_is_exact(tmp_path, pipeline):
    """A run resumed from a checkpoint taken after step 3 of epoch 0 sees exactly the batches
    (labels and augmented pixels) of the straight run from step 4 on, through epoch 1."""
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self, log):
            super().__init__()
            self.linear = torch.nn.Linear(3 * 8 * 8, 10)
            self.log_ = log

        def training_step(self, batch, batch_idx):
            x, y = batch["train"]
            xv, yv = batch["val"]
            self.log_.append(
                (self.current_epoch, batch_idx, y.tolist(), yv.tolist(), x.sum().item())
            )
            return torch.nn.functional.cross_entropy(self.linear(x.flatten(1)), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(root, max_steps=-1, ckpt=None, every=None):
        log = []
        callbacks = []
        if every:
            callbacks.append(
                L.pytorch.callbacks.ModelCheckpoint(
                    dirpath=root, every_n_train_steps=every, save_top_k=-1, filename="{step}"
                )
            )
        trainer = L.Trainer(
            max_epochs=2,
            max_steps=max_steps,
            accelerator="cpu",
            logger=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=bool(every),
            default_root_dir=root,
            callbacks=callbacks,
        )
        cfg = synthetic_cfg(pipeline=pipeline, train_portion=0.6, num_samples=80)
        module = SearchDataModule(cfg, batch_size=8, seed=0)  # 48 / 32 images: α half cycles
        trainer.fit(Probe(log), datamodule=module, ckpt_path=ckpt)
        return log

    straight = fit(tmp_path / "a")
    assert len(straight) == 12
    fit(tmp_path / "b", max_steps=3, every=3)
    resumed = fit(tmp_path / "b", ckpt=str(tmp_path / "b" / "step=3.ckpt"))
    assert resumed == straight[3:]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_cache_on_cuda_trainer():
    """On a CUDA trainer the uint8 arrays move to the GPU once; batches equal the host path."""
    import lightning as L

    seen = []

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3 * 8 * 8, 10)

        def training_step(self, batch, batch_idx):
            x, y = batch
            seen.append((x.device.type, y.cpu()))
            return torch.nn.functional.cross_entropy(self.linear(x.flatten(1)), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = RetrainDataModule(synthetic_cfg(), batch_size=16, seed=0, cutout=4)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        accelerator="cuda",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(Probe(), datamodule=module)
    assert module.train_set.x.device.type == "cuda" and module.train_set.y.device.type == "cuda"
    host = RetrainDataModule(synthetic_cfg(), batch_size=16, seed=0, cutout=4)
    it = iter(host.train_dataloader())
    for device_type, y in seen:
        assert device_type == "cuda" and torch.equal(y, next(it)[1])
