"""Backends for the mixed-op core: the weighted sum of candidate outputs.

``mix(outputs, weights, backend)`` computes ``sum_i weights[i] * outputs[i]``
(``search_space.kernel``):

- ``torch``: the eager reference, always available;
- ``triton``: the fused kernel of ``triton_mix`` (CUDA tensors, or CPU tensors under Triton's
  interpreter with ``TRITON_INTERPRET=1``); asking for it where it cannot run is an error;
- ``auto``: ``triton`` for CUDA tensors when Triton imports, ``torch`` otherwise.

The grouped edge ops' batch norm and depthwise convolutions have their own backends
(``supernet.kernels.op_kernels``).
"""

from __future__ import annotations

import functools
import os

import torch

from supernet.kernels.torch_ref import weighted_sum

BACKENDS = ("auto", "torch", "triton")


class KernelUnavailableError(ValueError, RuntimeError):
    """A kernel asked for where it cannot run. A configuration error (a ``ValueError``, which
    ``train.py`` reports as one paragraph), and a ``RuntimeError`` as it was before."""


@functools.cache
def triton_import_error() -> str | None:
    """None when the Triton kernel imports, else why it does not."""
    try:
        import supernet.kernels.triton_batch_norm  # noqa: F401
        import supernet.kernels.triton_depthwise  # noqa: F401
        import supernet.kernels.triton_mix  # noqa: F401
    except Exception as err:  # ImportError, or a broken Triton install
        return f"{type(err).__name__}: {err}"
    return None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def resolve_backend(name: str, device: torch.device | None = None) -> str:
    """Checks a backend name; with a device, maps ``auto`` to the backend that will run there."""
    if name not in BACKENDS:
        raise ValueError(
            f"Unknown mixed-op kernel backend {name!r}. Valid choices are: {', '.join(BACKENDS)}."
        )
    if device is None:
        return name
    on_cuda = torch.device(device).type == "cuda"
    if name == "auto":
        return "triton" if on_cuda and triton_import_error() is None else "torch"
    if name == "triton":
        check_triton_runs(device, "search_space.kernel")
    return name


def check_triton_runs(device: torch.device, key: str) -> None:
    """Raises a clear error where ``key=triton`` cannot run: no Triton, or no CUDA device and no
    interpreter."""
    reason = triton_import_error()
    if reason is not None:
        raise KernelUnavailableError(
            f"{key}=triton was asked for, but the Triton kernels cannot be imported "
            f"({reason}). Install the extra (pip install 'oneshot-nas[triton]') or use "
            f"{key}=torch."
        )
    if torch.device(device).type != "cuda" and not _interpreting():
        raise KernelUnavailableError(
            f"{key}=triton needs CUDA tensors, but the supernet runs on {device}. Use "
            f"{key}=torch, or set TRITON_INTERPRET=1 (slow) to run it on the CPU."
        )


def split_reduction(
    channels: int, length: int, block: int, target: int, max_chunks: int
) -> tuple[int, int]:
    """``(chunk, chunks)`` for a per-channel reduction over ``length`` values split into programs
    (the Triton batch norm and depthwise weight gradient): ``chunks`` runs of ``chunk`` values,
    a multiple of ``block``, none empty, about ``target`` programs in all (at most ``max_chunks``
    per channel). It depends on the shape only, so a shape is always reduced in the same order."""

    def cdiv(a: int, b: int) -> int:
        return -(-a // b)

    chunks = max(1, min(max_chunks, target // max(channels, 1), cdiv(length, block)))
    chunk = cdiv(cdiv(length, chunks), block) * block
    return chunk, cdiv(length, chunk)


def mix(outputs: list[torch.Tensor], weights: torch.Tensor, backend: str = "torch") -> torch.Tensor:
    """Weighted sum of same-shaped candidate outputs; ``weights`` has one entry per output."""
    if backend != "torch" and resolve_backend(backend, outputs[0].device) == "triton":
        from supernet.kernels.triton_mix import triton_mix

        return triton_mix(outputs, weights)
    return weighted_sum(outputs, weights)
