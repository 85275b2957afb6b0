"""Readers on small files generated in each real on-disk format: CIFAR-10/100 (folder, archive,
download, checksum), ImageNet16-120, NB201's test halves, image folders."""

from __future__ import annotations

import dataclasses
import json
import pickle
import tarfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.data import (
    DataConfig,
    RetrainDataModule,
    SearchDataModule,
    cifar,
    imagenet16,
    load_arrays,
    load_dataset,
)
from nas.data.download import DatasetFileError, md5_file
from nas.data.imagefolder import resize_center_crop, resized_crop_box, scan_image_folder
from nas.data.splits import nb201_test_halves, seeded_halves

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"


def cfg_for(name: str, root: Path | None, **overrides) -> DataConfig:
    shapes = {"cifar10": ([3, 32, 32], 10), "cifar100": ([3, 32, 32], 100)}
    shapes |= {"imagenet16_120": ([3, 16, 16], 120), "imagefolder": ([3, 24, 24], 3)}
    shape, classes = shapes[name]
    cfg = DataConfig(
        name=name,
        root=None if root is None else str(root),
        input_shape=shape,
        num_classes=classes,
        mean=[0.5] * 3,
        std=[0.25] * 3,
    )
    return dataclasses.replace(cfg, **overrides)


# ----- CIFAR -----


def write_cifar(root: Path, name: str, n_train: int, n_test: int, seed: int = 0) -> dict:
    """Official layout: pickled dicts with b"data" [N, 3072] uint8 and the label key."""
    spec = cifar.SPECS[name]
    rng = np.random.default_rng(seed)
    folder = root / spec.folder
    folder.mkdir(parents=True)
    files = {}
    per_train = n_train // len(spec.train_files)
    for member in (*spec.train_files, *spec.test_files):
        n = per_train if member in spec.train_files else n_test
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, spec.num_classes, size=n).tolist()
        payload = {b"batch_label": member.encode(), spec.label_key: labels, b"data": data}
        if name == "cifar100":
            payload[b"coarse_labels"] = [v // 5 for v in labels]
        (folder / member).write_bytes(pickle.dumps(payload, protocol=2))
        files[member] = (data, labels)
    return files


def archive_of(root: Path, name: str) -> Path:
    spec = cifar.SPECS[name]
    path = root / spec.remote.filename
    with tarfile.open(path, "w:gz") as tar:
        tar.add(root / spec.folder, arcname=spec.folder)
    return path


def small_spec(monkeypatch, name: str, n_train: int, n_test: int, **remote) -> cifar.CifarSpec:
    spec = cifar.SPECS[name]
    spec = dataclasses.replace(
        spec, num_train=n_train, num_test=n_test, remote=dataclasses.replace(spec.remote, **remote)
    )
    monkeypatch.setitem(cifar.SPECS, name, spec)
    return spec


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_folder_and_archive(tmp_path, monkeypatch, name):
    files = write_cifar(tmp_path / "src", name, n_train=50, n_test=20)
    spec = cifar.SPECS[name]
    archive = archive_of(tmp_path / "src", name)
    small_spec(monkeypatch, name, 50, 20, md5=md5_file(archive))
    from_folder = load_arrays(cfg_for(name, tmp_path / "src"))
    only_archive = tmp_path / "archive"
    only_archive.mkdir()
    archive.rename(only_archive / archive.name)
    from_archive = load_arrays(cfg_for(name, only_archive, download=False))
    for arrays in (from_folder, from_archive):
        assert arrays.x_train.shape == (50, 3, 32, 32) and arrays.x_test.shape == (20, 3, 32, 32)
        train = [files[m] for m in spec.train_files]
        assert arrays.y_train.tolist() == sum((labels for _, labels in train), [])
        assert arrays.y_test.tolist() == files[spec.test_files[0]][1]
        # Row layout: 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane.
        assert arrays.x_train[2, 1, 5, 7] == train[0][0][2, 1024 + 5 * 32 + 7]
        assert arrays.x_test[3, 2, 31, 0] == files[spec.test_files[0]][0][3, 2048 + 31 * 32]
    assert torch.equal(from_folder.x_train, from_archive.x_train)


def test_cifar_download_from_url(tmp_path, monkeypatch):
    write_cifar(tmp_path / "server", "cifar100", n_train=40, n_test=10)
    archive = archive_of(tmp_path / "server", "cifar100")
    small_spec(monkeypatch, "cifar100", 40, 10, md5=md5_file(archive), url=archive.as_uri())
    root = tmp_path / "data" / "cifar100"
    arrays = load_arrays(cfg_for("cifar100", root))  # data.download defaults to true
    assert arrays.x_train.shape[0] == 40 and (root / "cifar-100-python.tar.gz").is_file()
    assert [p.name for p in root.iterdir()] == ["cifar-100-python.tar.gz"]  # no temp files left
    # A second load reads the verified archive without downloading.
    archive.unlink()
    assert torch.equal(load_arrays(cfg_for("cifar100", root)).x_test, arrays.x_test)


def test_cifar_download_errors(tmp_path, monkeypatch):
    write_cifar(tmp_path / "server", "cifar10", n_train=25, n_test=5)
    archive = archive_of(tmp_path / "server", "cifar10")
    # Wrong checksum of the downloaded file: nothing is written.
    small_spec(monkeypatch, "cifar10", 25, 5, url=archive.as_uri())
    root = tmp_path / "data"
    with pytest.raises(DatasetFileError, match=CIFAR10_MD5) as info:
        load_arrays(cfg_for("cifar10", root))
    assert "Downloaded" in str(info.value) and "nothing was written" in str(info.value)
    assert not root.exists() or not any(root.iterdir())
    # Offline (unreachable URL): one error naming the file, its checksum and how to get it.
    small_spec(monkeypatch, "cifar10", 25, 5, url=(tmp_path / "nothing.tar.gz").as_uri())
    with pytest.raises(DatasetFileError) as info:
        load_arrays(cfg_for("cifar10", root))
    message = str(info.value)
    assert "Could not download" in message and CIFAR10_MD5 in message
    assert str(root / "cifar-10-python.tar.gz") in message and "wget" in message


def test_cifar_missing_truncated_and_wrong_checksum(tmp_path, monkeypatch):
    with pytest.raises(DatasetFileError, match="cifar-10-python.tar.gz") as info:
        cifar.load_cifar10(tmp_path / "nowhere", download=False)
    assert CIFAR10_URL in str(info.value) and CIFAR10_MD5 in str(info.value)

    write_cifar(tmp_path / "full", "cifar10", n_train=500, n_test=100)
    blob = archive_of(tmp_path / "full", "cifar10").read_bytes()
    (tmp_path / "cut").mkdir()
    cut = tmp_path / "cut" / "cifar-10-python.tar.gz"
    cut.write_bytes(blob[:-5000])
    # With the official checksum, a truncated archive fails verification before it is read.
    with pytest.raises(DatasetFileError, match="truncated") as info:
        cifar.load_cifar10(tmp_path / "cut")
    assert CIFAR10_MD5 in str(info.value) and str(cut) in str(info.value)
    # Even if its checksum were accepted, the reader refuses the truncated stream.
    small_spec(monkeypatch, "cifar10", 500, 100, md5=md5_file(cut))
    with pytest.raises(ValueError, match="corrupt"):
        cifar.load_cifar10(tmp_path / "cut")


def test_cifar_partial_or_tampered_folder(tmp_path, monkeypatch):
    write_cifar(tmp_path, "cifar10", n_train=25, n_test=5)
    with pytest.raises(ValueError, match="25 training images, not 50000"):
        cifar.load_cifar10(tmp_path)  # the official counts are enforced
    small_spec(monkeypatch, "cifar10", 25, 5)
    assert cifar.load_cifar10(tmp_path).x_train.shape[0] == 25
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "test_batch").unlink()
    with pytest.raises(DatasetFileError, match="test_batch"):
        cifar.load_cifar10(tmp_path, download=False)
    # A pickle that would build anything besides plain data is refused.
    evil = pickle.dumps({b"data": OrderedDict(), b"labels": []}, protocol=2)
    (folder / "test_batch").write_bytes(evil)
    with pytest.raises(ValueError, match="not allowed"):
        cifar.load_cifar10(tmp_path)


def test_official_constants():
    assert cifar.SPECS["cifar10"].remote.md5 == CIFAR10_MD5
    assert cifar.SPECS["cifar100"].remote.md5 == CIFAR100_MD5
    assert cifar.SPECS["cifar100"].remote.url.endswith("/~kriz/cifar-100-python.tar.gz")


# ----- ImageNet16-120 -----


def write_imagenet16(root: Path, per_file: int = 40, n_val: int = 60, seed: int = 0) -> dict:
    """ImageNet16 layout: train_data_batch_1..10 and val_data with 'data' and 'labels' 1..1000."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in [(f"train_data_batch_{i}", per_file) for i in range(1, 11)] + [
        ("val_data", n_val)
    ]:
        data = rng.integers(0, 256, size=(n, 768), dtype=np.uint8)
        # Half of the labels in the 120-class subset, half outside it (121..1000).
        labels = np.where(
            np.arange(n) % 2 == 0, rng.integers(1, 121, n), rng.integers(121, 1001, n)
        )
        payload = {"data": data, "labels": labels.tolist()}
        if name != "val_data":
            payload["mean"] = data.mean(0)
        (root / name).write_bytes(pickle.dumps(payload))
        out[name] = (data, labels)
    return out


def test_imagenet16_120_subset_and_labels(tmp_path, monkeypatch):
    files = write_imagenet16(tmp_path)
    with pytest.raises(ValueError, match="200 training images of labels 1..120, not 151700"):
        imagenet16.load_imagenet16(tmp_path)
    monkeypatch.setitem(imagenet16.SPECS, "imagenet16_120", imagenet16.ImageNet16Spec(120, 200, 30))
    arrays = load_arrays(cfg_for("imagenet16_120", tmp_path))
    assert arrays.x_train.shape == (200, 3, 16, 16) and arrays.x_test.shape == (30, 3, 16, 16)
    data, labels = files["train_data_batch_1"]
    keep = labels <= 120
    assert arrays.y_train[:20].tolist() == (labels[keep] - 1).tolist()  # relabelled 0..119
    assert 0 <= int(arrays.y_train.min()) and int(arrays.y_train.max()) <= 119
    # Channel-planar rows: 256 red, 256 green, 256 blue values of a row-major 16x16 image.
    first = data[keep][1]
    assert arrays.x_train[1, 2, 3, 4] == first[512 + 3 * 16 + 4]
    (tmp_path / "val_data").unlink()
    with pytest.raises(DatasetFileError, match="val_data"):
        load_arrays(cfg_for("imagenet16_120", tmp_path))


# ----- NB201 splits -----


def test_seeded_halves_are_stratified_and_fixed():
    labels = torch.arange(100).repeat_interleave(10)[torch.randperm(1000)]
    xvalid, xtest = seeded_halves(labels)
    assert xvalid.numel() == xtest.numel() == 500
    assert torch.equal(torch.cat([xvalid, xtest]).sort().values, torch.arange(1000))
    assert labels[xvalid].bincount().tolist() == [5] * 100
    again = seeded_halves(labels)
    assert torch.equal(again[0], xvalid) and torch.equal(again[1], xtest)


def test_nb201_split_in_datamodules(tmp_path, monkeypatch):
    write_imagenet16(tmp_path)
    monkeypatch.setitem(imagenet16.SPECS, "imagenet16_120", imagenet16.ImageNet16Spec(120, 200, 30))
    cfg = cfg_for("imagenet16_120", tmp_path, split="nb201")
    retrain = RetrainDataModule(cfg, batch_size=8, seed=0)
    retrain.setup()
    assert len(retrain.val_set) + len(retrain.test_set) == 30 and "seeded" in retrain.split_source
    search = SearchDataModule(cfg, batch_size=8, seed=1)
    search.setup()
    assert search.split_sizes == {"train": 200, "val": len(retrain.val_set)}
    assert torch.equal(search.arch_set.x, retrain.val_set.x)  # α on x-valid, same for every seed
    # NB201's official split file wins when present (its config format: ["int", [...]]).
    xvalid, xtest = list(range(0, 30, 3)), [i for i in range(30) if i % 3]
    split = {"xvalid": ["int", xvalid], "xtest": xtest}
    (tmp_path / "imagenet-16-120-test-split.txt").write_text(json.dumps(split))
    retrain = RetrainDataModule(cfg, batch_size=8, seed=0)
    retrain.setup()
    x_test = load_arrays(cfg).x_test
    assert torch.equal(retrain.val_set.x, x_test[xvalid]) and torch.equal(
        retrain.test_set.x, x_test[xtest]
    )
    assert retrain.split_source.endswith("imagenet-16-120-test-split.txt")
    split["xtest"] = xvalid[:2] + xtest
    (tmp_path / "imagenet-16-120-test-split.txt").write_text(json.dumps(split))
    with pytest.raises(ValueError, match="overlap"):
        nb201_test_halves("imagenet16_120", tmp_path, load_arrays(cfg).y_test)


# ----- image folders -----


def write_image_folder(root: Path, classes=("cat", "dog", "eel"), per_class=(4, 2)) -> None:
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                size = (int(rng.integers(20, 60)), int(rng.integers(20, 60)))
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                ext = ".JPEG" if i % 2 == 0 else ".png"
                Image.fromarray(pixels).save(root / split / c / f"{c}_{i}{ext}")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")


def test_image_folder_scan_and_loader(tmp_path):
    write_image_folder(tmp_path)
    splits = scan_image_folder(tmp_path)
    assert splits.classes == ["cat", "dog", "eel"] and len(splits.train_files) == 12
    assert splits.y_train.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and len(splits.test_files) == 6
    cfg = cfg_for("imagefolder", tmp_path, eval_resize=28)
    assert load_dataset(cfg).classes == splits.classes
    module = RetrainDataModule(cfg, batch_size=5, seed=0)
    assert module.pipeline == "loader"
    x, y = next(iter(module.test_dataloader()))
    assert x.shape == (5, 3, 24, 24) and x.dtype == torch.float32 and y.tolist() == [0, 0, 1, 1, 2]
    x, y, _ = next(iter(module.train_dataloader()))
    assert x.shape == (5, 3, 24, 24) and set(y.tolist()) <= {0, 1, 2}
    with pytest.raises(DatasetFileError, match="ImageNet layout"):
        scan_image_folder(tmp_path / "train")


def test_resized_crop_box_statistics():
    gen = torch.Generator().manual_seed(0)
    boxes = [resized_crop_box(400, 300, gen) for _ in range(2000)]
    areas = np.array([w * h / (400 * 300) for _, _, w, h in boxes])
    ratios = np.array([w / h for _, _, w, h in boxes])
    for left, top, w, h in boxes:
        assert 0 <= left and left + w <= 400 and 0 <= top and top + h <= 300
    assert 0.075 < areas.min() and areas.max() <= 1.0 and 0.4 < areas.mean() < 0.6
    assert 0.74 < ratios.min() and ratios.max() < 1.34
    # Evaluation: shorter side to 256, then the central 224 x 224.
    img = Image.fromarray(np.zeros((300, 600, 3), dtype=np.uint8))
    assert resize_center_crop(img, 256, (224, 224)).size == (224, 224)
