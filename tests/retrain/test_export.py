"""``nas/retrain/export.py``: the retrained child network as TorchScript / ONNX files, and latency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas.core.genotype import NB201Genotype, resolve_genotype
from nas.retrain import export
from nas.retrain.export import ExportConfig
from nas.run import builders
from nas.run.settings import data_settings
from tests.helpers.config import compose_cfg
from tests.helpers.runs import read_summary, run_train

NB201 = "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
FAST = {"latency_batch": 1, "latency_repeats": 3, "latency_warmup": 1, "atol": 1e-4}
# The children of every space: (overrides, genotype). A new space adds a line here.
CHILDREN = {
    "darts_cifar": ([], "darts_v2"),
    "darts_imagenet": (
        ["retrain.network=imagenet", "data.input_shape=[3,32,32]"],
        "pc_darts_imagenet",
    ),
    "nb201": (["search_space=nb201"], NB201),
}


def child(name: str):
    """A tiny child network of a genotype (untrained, eval mode), its config and genotype."""
    overrides, text = CHILDREN[name]
    cfg = compose_cfg(["experiment=smoke", "data=synthetic", "logger=none", *overrides])
    space = builders.space_from_config(cfg)
    genotype = NB201Genotype.from_text(text) if text.startswith("|") else resolve_genotype(text)
    torch.manual_seed(0)
    model = builders.child_network(cfg, space, genotype)
    for m in model.modules():  # BN statistics other than 0/1: eval mode is not the identity
        if isinstance(m, torch.nn.BatchNorm2d) and m.running_mean is not None:
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval(), data_settings(cfg), genotype, space.name


@pytest.mark.parametrize("name", sorted(CHILDREN))
def test_torchscript_export_matches_pytorch(name: str, tmp_path: Path) -> None:
    model, data, genotype, space = child(name)
    settings = ExportConfig(**FAST, torchscript=True, onnx=False)
    fields = export.export_child(model, settings, data, tmp_path, genotype, space)
    entry = fields["export"]["torchscript"]
    assert entry["file"] == str(tmp_path / "model.pt") and entry["max_abs_diff"] <= 1e-5
    loaded = torch.jit.load(str(tmp_path / "model.pt"))
    x = torch.randn(3, *data.input_shape)  # not the traced batch size
    with torch.no_grad():
        expected = model(x)[0]
        torch.testing.assert_close(loaded(x), expected, atol=1e-5, rtol=1e-5)
    assert not model.training  # the trained network is left as it was
    for timed in (entry, fields["latency"]):
        assert timed["latency_ms"] > 0 and timed["batch"] == 1 and timed["repeats"] == 3
        assert timed["threads"] >= 1 and timed["device"] == "cpu"
    assert (
        fields["latency_ms"] == entry["latency_ms"] and fields["latency"]["model"] == "torchscript"
    )
    side = export.load_sidecar(fields["export"]["sidecar"])
    assert side == json.loads(json.dumps(export.sidecar(data, genotype, space, side["files"])))
    assert side["files"] == {"torchscript": "model.pt"} and side["genotype"] == str(genotype)
    assert side["input_shape"] == list(data.input_shape)
    assert side["num_classes"] == data.num_classes == expected.shape[1]
    recipe = side["preprocessing"]  # synthetic data: the raw uint8 images are the pixels
    assert recipe["mean"] == list(data.mean) and recipe["std"] == list(data.std)
    assert recipe["pixel_scale"] is None and recipe["scale"] == 255
    assert recipe["formula"] == "x = (pixels / 255 - mean) / std, per channel"


# darts_cifar under -m slow: nb201 exercises the same export path by default
@pytest.mark.parametrize("name", [pytest.param("darts_cifar", marks=pytest.mark.slow), "nb201"])
def test_onnx_export_matches_pytorch(name: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, data, genotype, space = child(name)
    settings = ExportConfig(**FAST, torchscript=False, onnx=True)
    fields = export.export_child(model, settings, data, tmp_path, genotype, space)
    entry = fields["export"]["onnx"]
    assert "error" not in entry, entry
    assert entry["max_abs_diff"] <= 1e-4 and entry["latency_ms"] > 0
    session = ort.InferenceSession(entry["file"], providers=["CPUExecutionProvider"])
    x = torch.randn(5, *data.input_shape)  # the batch axis is dynamic
    (out,) = session.run(["logits"], {"input": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x)[0], atol=1e-4, rtol=1e-4)
    # Without TorchScript the summary's latency is the PyTorch model's.
    assert fields["latency"]["model"] == "pytorch eager" and fields["latency_ms"] > 0
    assert export.load_sidecar(tmp_path / "model.json")["files"] == {"onnx": "model.onnx"}


def test_a_failed_export_is_reported_not_raised(tmp_path: Path, monkeypatch) -> None:
    model, data, genotype, space = child("nb201")

    def broken(*args, **kwargs):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(export, "export_torchscript", broken)
    for setting, required in (("auto", False), (True, True)):
        settings = ExportConfig(**FAST, torchscript=setting, onnx=False)
        fields = export.export_child(model, settings, data, tmp_path, genotype, space)
        entry = fields["export"]["torchscript"]
        assert entry == {"error": "RuntimeError: cannot trace this", "required": required}
        assert fields["latency"]["model"] == "pytorch eager"  # latency still measured
        assert not (tmp_path / "model.pt").exists() and "sidecar" not in fields["export"]
        assert bool(export.failed_required(fields)) == required


@pytest.mark.parametrize(
    "bad", [{"torchscript": "yes"}, {"onnx": 1}, {"latency_batch": 0}, {"latency_repeats": -1}]
)
def test_bad_export_settings_fail_before_training(bad: dict) -> None:
    with pytest.raises(ValueError, match="export\\."):
        export.check_config(ExportConfig(**bad))


def test_retrain_writes_the_exports_and_profile_the_latency(tmp_path: Path, monkeypatch) -> None:
    """One tiny stage=retrain run: model.pt, model.json and the summary's export entries; a
    failing export asked for with true fails the run but keeps checkpoint and summary."""
    common = ["data=synthetic", "genotype=darts_v2", "threads=1", "export.latency_repeats=3"]
    run = tmp_path / "retrain"
    assert run_train(monkeypatch, run, "stage=retrain", *common, logger="none") == 0
    summary = read_summary(run)
    entry = summary["export"]["torchscript"]
    assert entry["file"] == str(run / "model.pt") and entry["max_abs_diff"] <= 1e-5
    assert summary["latency_ms"] == entry["latency_ms"] > 0 and summary["latency"]["threads"] == 1
    assert summary["export"]["sidecar"] == str(run / "model.json")
    loaded = torch.jit.load(str(run / "model.pt"))
    assert loaded(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert summary["params"] > 0 and summary["macs"] > 0

    profiled = tmp_path / "profile"
    assert run_train(monkeypatch, profiled, "stage=profile", *common, logger="none") == 0
    latency = read_summary(profiled)["latency"]
    assert latency["latency_ms"] > 0 and latency["model"] == "pytorch eager"

    def broken(*args, **kwargs):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(export, "export_torchscript", broken)
    failed = tmp_path / "failed"
    args = ["stage=retrain", *common, "export.torchscript=true"]
    assert run_train(monkeypatch, failed, *args, logger="none") == 2
    assert (failed / "checkpoints" / "retrain" / "last.ckpt").is_file()
    summary = read_summary(failed)
    assert summary["export"]["torchscript"]["required"] is True and summary["test_acc"] is not None
