"""A retrained child network as files a user runs without this codebase, and its latency.

After retraining, the child network is exported in eval mode (no auxiliary head, no drop path)
as TorchScript (``model.pt``, ``torch.jit.trace``: the eval-mode forward of every space's child
has no data-dependent control flow, while scripting would have to compile each space's Python)
and, optionally, ONNX (``model.onnx``, dynamic batch axis, checked with onnxruntime). Both take
a normalised float32 NCHW batch and return the logits ``[N, num_classes]`` (token datasets:
int64 token ids ``[N, T]``, logits ``[N * T, num_classes]``; the example batches come from
``nas.data.inputs``); ``model.json`` beside them says how to get there (input shape; ``preprocessing``: the dataset's raw format,
how its reader makes uint8 pixels of it, the per-channel mean and std, the whole formula;
class count, genotype). Each export is loaded back from its file and compared with the PyTorch model on a
fixed random batch (``max_abs_diff``), and timed on the run's device (``latency_ms``: the
median of ``export.latency_repeats`` forwards of a ``export.latency_batch`` batch after
``export.latency_warmup`` warm-up ones; the threads are recorded).

An export that fails never loses the trained model (its checkpoint is already written): the
error goes to the console and to ``summary.json``; the run fails only for a format the user
asked for with ``true`` (``auto``: export if possible, warn otherwise).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nas.core.io import atomic_write_json
from nas.core.log import get_logger
from nas.data.inputs import example_input, input_description
from nas.hardware.latency import measure_latency

log = get_logger(__name__)

if TYPE_CHECKING:
    from nas.data.config import DataConfig

TORCHSCRIPT_FILE = "model.pt"
ONNX_FILE = "model.onnx"
SIDECAR_FILE = "model.json"
FORMATS = ("torchscript", "onnx")
MODES = (True, False, "auto")
ONNX_INSTALL = "pip install -e '.[onnx]'"
CHECK_BATCH = 2  # the fixed random batch each export is compared on
CHECK_SEED = 0


@dataclass
class ExportConfig:
    """The ``export`` settings: which files, how closely checked, how timed.

    After retraining (``stage=retrain``, ``pipeline``) the child network in eval mode is
    written as ``model.pt`` (TorchScript) and ``model.onnx``, with ``model.json`` (input shape,
    mean/std, classes, genotype); each is checked against PyTorch's outputs and timed.
    ``torchscript`` / ``onnx``: true (export; a failure fails the run, after the checkpoint and
    summary.json are written), false (no export) or auto (export if possible; a failure is
    reported, not fatal; ONNX only when its packages are installed). Typed ``Any`` for the
    string ``auto`` (``nas.run.schema`` registers this dataclass; OmegaConf has no unions);
    ``check_config`` validates before training. ``stage=profile`` times the eager network with
    the same latency settings.
    """

    torchscript: Any = "auto"  # model.pt (torch.jit.trace of the eval-mode network)
    onnx: Any = False  # model.onnx (dynamic batch axis; needs pip install -e '.[onnx]')
    atol: float = 1e-4  # max |export - PyTorch| on a fixed random batch before it counts as failed
    latency_batch: int = 1  # batch size of the latency measurement
    latency_repeats: int = 20  # timed forwards (median reported); 0 = no latency
    latency_warmup: int = 5  # untimed forwards first


class LogitsOnly(nn.Module):
    """A child network with one tensor output: the logits.

    Children return ``(logits, aux_logits | None)`` (aux only in training); a traced or ONNX
    graph cannot return ``None``, and a user wants the logits alone.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, (tuple, list)) else out


# torch layers whose subclasses may only change how the same result is computed.
PLAIN_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


def deployable(model: nn.Module) -> LogitsOnly:
    """An eval-mode float32 NCHW copy of a child network on the CPU, returning logits, with the
    auxiliary head removed (it runs in training only, and its weights have no use after)."""
    net = copy.deepcopy(model).float().cpu().to(memory_format=torch.contiguous_format)
    if isinstance(getattr(net, "auxiliary", None), nn.Module):
        net.auxiliary = None
    return LogitsOnly(net).eval()


def plain_layers(net: nn.Module) -> int:
    """Turns, in place, every subclass of a torch layer that overrides its ``forward`` back into
    that layer; returns how many.

    Such subclasses are speed forms of the same computation (``supernet/ops.py``:
    ``DepthwiseConv2d``, ``PointwiseConv2d`` route the CPU backward through custom autograd
    Functions, which a trace cannot save and ONNX cannot express). The same parameters then
    run the layer's own forward; the exports are compared with the unchanged network, so a
    subclass that computed something else would fail that check, not pass silently.
    """
    swapped = 0
    for module in net.modules():
        for base in PLAIN_LAYERS:
            kind = type(module)
            if isinstance(module, base) and kind is not base and kind.forward is not base.forward:
                module.__class__ = base
                swapped += 1
                break
    return swapped


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def mode(settings: ExportConfig, fmt: str) -> bool | str:
    """The ``export.<fmt>`` setting: True (required), False (off) or ``"auto"``."""
    value = getattr(settings, fmt)  # fmt: one of FORMATS, each a field
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if value not in MODES or (isinstance(value, int) and not isinstance(value, bool)):
        raise ValueError(
            f"Unknown export.{fmt}={value!r}. Valid: true (export; a failure fails the run), "
            "false (no export), auto (export if possible; a failure is reported, not fatal)."
        )
    return value


def check_config(settings: ExportConfig) -> None:
    """Fails before training on a bad ``export`` block, or on ``export.onnx=true`` without
    the ONNX packages, rather than after hours of retraining."""
    modes = {fmt: mode(settings, fmt) for fmt in FORMATS}
    if modes["onnx"] is True and not onnx_available():
        raise ValueError(
            "export.onnx=true needs the packages onnx, onnxscript and onnxruntime: "
            f"{ONNX_INSTALL} (or export.onnx=false / auto)."
        )
    for key, low in (("latency_batch", 1), ("latency_repeats", 0), ("latency_warmup", 0)):
        value = getattr(settings, key)
        if not isinstance(value, int) or value < low:
            raise ValueError(f"export.{key}={value!r} must be an int >= {low}.")


def latency_settings(settings: ExportConfig) -> dict[str, int]:
    return {
        "batch": int(settings.latency_batch),
        "repeats": int(settings.latency_repeats),
        "warmup": int(settings.latency_warmup),
    }


def eager_latency(
    model: nn.Module, data: DataConfig, settings: ExportConfig, device: torch.device | str
) -> dict[str, Any]:
    """Latency of the child network's eval-mode PyTorch forward (``stage=profile``)."""
    s = latency_settings(settings)
    net = deployable(model).to(device)
    x = example_input(data, s["batch"], device=device)
    result = measure_latency(net, x, device, s["repeats"], s["warmup"])
    return {**result, "model": "pytorch eager"}


def check_batch(data: DataConfig) -> torch.Tensor:
    """The fixed random batch every export is compared on."""
    generator = torch.Generator().manual_seed(CHECK_SEED)
    return example_input(data, CHECK_BATCH, generator)


def export_torchscript(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Traces ``net`` (eval mode, logits out) on ``example`` and saves it to ``path``."""
    # TracerWarnings name Python-level shape checks (e.g. FactorizedReduce's even-size one):
    # constants for the fixed image size; the batch size stays free (checked on other sizes).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(net, example, check_trace=False)
    tmp = path.with_name(path.name + ".tmp")
    traced.save(str(tmp))
    tmp.replace(path)


def export_onnx(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX with a dynamic batch axis (input ``input``, output ``logits``), via torch.export."""
    import onnx

    batch = torch.export.Dim("batch", min=1)
    tmp = path.with_name(path.stem + ".tmp.onnx")
    quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed" registry notes
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                net,
                (example,),
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes={"x": {0: batch}},
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)
    program.save(str(tmp))
    onnx.checker.check_model(str(tmp))
    tmp.replace(path)


def onnx_session(path: Path, device: torch.device):
    """An onnxruntime session with torch's thread count (latencies comparable), on CUDA when
    the run is and onnxruntime has the provider, else on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), options, providers=providers)


def _torchscript_entry(
    net: nn.Module, x: torch.Tensor, ref: torch.Tensor, path: Path, device, s, atol: float, data
) -> dict[str, Any]:
    export_torchscript(net, x, path)
    loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        diff = (loaded(x) - ref).abs().max().item()
    entry: dict[str, Any] = {"file": str(path), "max_abs_diff": diff}
    if diff > atol:
        raise RuntimeError(f"TorchScript outputs differ from PyTorch's by {diff:.3g} > {atol}")
    if s["repeats"]:
        try:  # a file that runs on the CPU is kept, whatever happens on another device
            loaded = loaded.to(device)
            batch = example_input(data, s["batch"], device=device)
            entry.update(measure_latency(loaded, batch, device, s["repeats"], s["warmup"]))
        except Exception as err:  # noqa: BLE001
            entry["latency_error"] = f"on {device}: {type(err).__name__}: {err}"
            log.warning(f"warning: TorchScript latency not measured ({entry['latency_error']})")
    return entry


def _onnx_entry(
    net: nn.Module, x: torch.Tensor, ref: torch.Tensor, path: Path, device, s, atol: float, data
) -> dict[str, Any]:
    import numpy as np

    export_onnx(net, x, path)
    session = onnx_session(path, device)
    (out,) = session.run(["logits"], {"input": x.numpy()})
    diff = float(np.abs(out - ref.numpy()).max())
    entry: dict[str, Any] = {"file": str(path), "max_abs_diff": diff}
    if diff > atol:
        raise RuntimeError(f"ONNX Runtime outputs differ from PyTorch's by {diff:.3g} > {atol}")
    entry["providers"] = session.get_providers()
    if s["repeats"]:
        generator = torch.Generator().manual_seed(CHECK_SEED)
        feed = {"input": example_input(data, s["batch"], generator).numpy()}
        onnx_device = "cuda" if entry["providers"][0] == "CUDAExecutionProvider" else "cpu"
        timed = measure_latency(
            lambda f: session.run(None, f), feed, "cpu", s["repeats"], s["warmup"], s["batch"]
        )
        entry.update({**timed, "device": onnx_device})
    return entry


def sidecar(data: DataConfig, genotype: Any, space: str, files: dict[str, str]) -> dict[str, Any]:
    """What a user needs to run the exported files: the input and, under ``preprocessing``,
    the exact recipe from the dataset's raw files to that input (``nas.data.datasets``)."""
    from nas.data.datasets import preprocessing

    return {
        "files": files,
        "space": space,
        "genotype": str(genotype),
        "input_shape": list(data.input_shape),
        "input": input_description(data)["input"],
        "preprocessing": preprocessing(data),
        "num_classes": int(data.num_classes),
        "output": input_description(data)["output"],
        "dataset": data.name,
        "torch": torch.__version__,
        "usage": {
            "torchscript": "torch.jit.load('model.pt')(x)",
            "onnx": "onnxruntime.InferenceSession('model.onnx').run(['logits'], {'input': x})",
        },
    }


def load_sidecar(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def export_child(
    model: nn.Module,
    settings: ExportConfig,
    data: DataConfig,
    run_dir: Path,
    genotype: Any,
    space: str,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Exports a retrained child network in every format ``settings`` turns on.

    Returns the summary fields: ``export`` (per format: file, ``max_abs_diff``, latency, or the
    ``error`` and whether the format was ``required``; the sidecar file), and ``latency_ms`` /
    ``latency`` of the network on ``device`` (the TorchScript file's when it was exported, else
    the PyTorch model's). Never raises for a failed export: ``failed_required`` tells.
    """
    device = torch.device(device)
    s = latency_settings(settings)
    atol = float(settings.atol)
    net = deployable(model)
    x = check_batch(data)
    with torch.no_grad():
        ref = net(x)  # the network as trained, before plain_layers
    plain_layers(net)
    exporters = {"torchscript": (_torchscript_entry, TORCHSCRIPT_FILE)}
    exporters["onnx"] = (_onnx_entry, ONNX_FILE)
    export: dict[str, Any] = {}
    for fmt in FORMATS:
        setting = mode(settings, fmt)
        if setting is False:
            continue
        if fmt == "onnx" and setting == "auto" and not onnx_available():
            export[fmt] = {
                "skipped": f"onnx, onnxscript or onnxruntime not installed: {ONNX_INSTALL}"
            }
            continue
        build, name = exporters[fmt]
        path = run_dir / name
        try:
            export[fmt] = build(net, x, ref, path, device, s, atol, data)
            log.info(
                f"exported {fmt}: {path} (max |diff| vs PyTorch {export[fmt]['max_abs_diff']:.2g}"
                + (f", {export[fmt]['latency_ms']:.3g} ms at batch {s['batch']} on "
                   f"{export[fmt]['device']})" if "latency_ms" in export[fmt] else ")")
            )  # fmt: skip
        except Exception as err:  # noqa: BLE001 - any failure is reported, the model is kept
            path.unlink(missing_ok=True)
            why = f"{type(err).__name__}: {err}".strip()
            export[fmt] = {"error": why, "required": setting is True}
            level = "ERROR" if setting is True else "warning"
            log.log(
                logging.ERROR if setting is True else logging.WARNING,
                f"{level}: {fmt} export failed ({why}); the trained model is kept in "
                f"{run_dir / 'checkpoints' / 'retrain'}",
            )
    files = {f: Path(e["file"]).name for f, e in export.items() if "file" in e}
    if files:
        path = run_dir / SIDECAR_FILE
        atomic_write_json(path, sidecar(data, genotype, space, files))
        export["sidecar"] = str(path)
    fields: dict[str, Any] = {"export": export}
    timed = export.get("torchscript", {})
    if "latency_ms" in timed:
        keys = ("latency_ms", "batch", "repeats", "warmup", "threads", "device")
        latency = {**{k: timed[k] for k in keys}, "model": "torchscript"}
    elif s["repeats"]:
        net = net.to(device)
        batch = example_input(data, s["batch"], device=device)
        latency = {**measure_latency(net, batch, device, s["repeats"], s["warmup"])}
        latency["model"] = "pytorch eager"
    else:
        return fields
    fields.update({"latency_ms": latency["latency_ms"], "latency": latency})
    return fields


def exported_files(fields: Mapping) -> list[str]:
    """The files this run's export wrote (each format's, then the sidecar), from its fields."""
    export = fields.get("export") or {}
    files = [e["file"] for e in export.values() if isinstance(e, dict) and "file" in e]
    return files + ([export["sidecar"]] if "sidecar" in export else [])


def failed_required(fields: Mapping) -> list[str]:
    """The formats the user asked for (``true``) whose export failed, with the error."""
    export = fields.get("export") or {}
    return [
        f"{fmt}: {entry['error']}"
        for fmt, entry in export.items()
        if isinstance(entry, dict) and entry.get("required") and "error" in entry
    ]
