"""Fused mixed-op weighted sum in Triton: ``out = sum_k w[k] * x_k`` with its backward.

The eager sum makes one pass over memory per candidate for the products and one for the adds
(forward) and again per candidate for ``w_k * g`` and ``sum(g * x_k)`` (backward). Here one
launch reads up to ``MAX_INPUTS`` candidates once and writes the output once (forward), and
one launch reads ``g`` once, writes every ``grad x_k`` and a per-block partial of every
``grad w_k`` (backward). Partials are reduced by a fixed-order sum, so results do not depend on
scheduling (no float atomics). Accumulation is in fp32 whatever the storage dtype (fp32, bf16).
A candidate whose weight is exactly zero is not read in the forward pass (checked on the device).
Inputs either share one dense layout (contiguous or channels_last: flat offsets) or are each
dense per sample at their own batch stride: the channel slices that grouped edges produce
(``supernet.grouped_edges``) are read in place, not copied.

Runs on CUDA tensors, or on CPU tensors through Triton's interpreter (``TRITON_INTERPRET=1`` set
before this module is imported), which is how the tests check it.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

MAX_INPUTS = 16  # candidate pointers per launch; more candidates take several launches
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# The interpreter runs each program in Python: few, large blocks keep it tolerable.
BLOCK = 16384 if INTERPRET else 1024


@triton.jit
def _at(offs, b, rem, stride, STRIDED: tl.constexpr):
    """Where flat element ``offs`` of an input lies: ``offs`` itself in a dense layout shared
    with the output, else sample ``b`` at the input's own batch ``stride``, element ``rem``."""
    if STRIDED:
        at = b * stride + rem
    else:
        at = offs
    return at


@triton.jit
def _load_term(x_ptr, w_ptr, k, at, mask, acc):
    w = tl.load(w_ptr + k).to(tl.float32)
    if w != 0.0:  # a zero-weight candidate is never read
        acc += w * tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
    return acc


@triton.jit
def _mix_fwd_kernel(
    dst_ptr, acc_ptr, w_ptr,
    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15,
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15,
    n_elements, inner, w_start,
    K: tl.constexpr, HAS_ACC: tl.constexpr, STRIDED: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < n_elements
    b = offs // inner if STRIDED else offs
    rem = offs - b * inner if STRIDED else offs
    if HAS_ACC:
        acc = tl.load(acc_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        acc = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    w = w_ptr + w_start
    acc = _load_term(x0, w, 0, _at(offs, b, rem, s0, STRIDED), mask, acc)
    if K > 1:
        acc = _load_term(x1, w, 1, _at(offs, b, rem, s1, STRIDED), mask, acc)
    if K > 2:
        acc = _load_term(x2, w, 2, _at(offs, b, rem, s2, STRIDED), mask, acc)
    if K > 3:
        acc = _load_term(x3, w, 3, _at(offs, b, rem, s3, STRIDED), mask, acc)
    if K > 4:
        acc = _load_term(x4, w, 4, _at(offs, b, rem, s4, STRIDED), mask, acc)
    if K > 5:
        acc = _load_term(x5, w, 5, _at(offs, b, rem, s5, STRIDED), mask, acc)
    if K > 6:
        acc = _load_term(x6, w, 6, _at(offs, b, rem, s6, STRIDED), mask, acc)
    if K > 7:
        acc = _load_term(x7, w, 7, _at(offs, b, rem, s7, STRIDED), mask, acc)
    if K > 8:
        acc = _load_term(x8, w, 8, _at(offs, b, rem, s8, STRIDED), mask, acc)
    if K > 9:
        acc = _load_term(x9, w, 9, _at(offs, b, rem, s9, STRIDED), mask, acc)
    if K > 10:
        acc = _load_term(x10, w, 10, _at(offs, b, rem, s10, STRIDED), mask, acc)
    if K > 11:
        acc = _load_term(x11, w, 11, _at(offs, b, rem, s11, STRIDED), mask, acc)
    if K > 12:
        acc = _load_term(x12, w, 12, _at(offs, b, rem, s12, STRIDED), mask, acc)
    if K > 13:
        acc = _load_term(x13, w, 13, _at(offs, b, rem, s13, STRIDED), mask, acc)
    if K > 14:
        acc = _load_term(x14, w, 14, _at(offs, b, rem, s14, STRIDED), mask, acc)
    if K > 15:
        acc = _load_term(x15, w, 15, _at(offs, b, rem, s15, STRIDED), mask, acc)
    tl.store(
        dst_ptr + offs, acc.to(dst_ptr.dtype.element_ty, fp_downcast_rounding="rtne"), mask=mask
    )


@triton.jit
def _grad_term(x_ptr, gx_ptr, w_ptr, partial_ptr, k, g, offs, at, mask, pid, num_blocks):
    w = tl.load(w_ptr + k).to(tl.float32)
    tl.store(
        gx_ptr + offs, (w * g).to(gx_ptr.dtype.element_ty, fp_downcast_rounding="rtne"), mask=mask
    )
    x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
    tl.store(partial_ptr + k * num_blocks + pid, tl.sum(g * x, axis=0))


@triton.jit
def _mix_bwd_kernel(
    g_ptr, w_ptr, partial_ptr,
    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15,
    gx0, gx1, gx2, gx3, gx4, gx5, gx6, gx7, gx8, gx9, gx10, gx11, gx12, gx13, gx14, gx15,
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15,
    n_elements, inner, w_start, num_blocks,
    K: tl.constexpr, STRIDED: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < n_elements
    b = offs // inner if STRIDED else offs
    rem = offs - b * inner if STRIDED else offs
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    w = w_ptr + w_start
    p = partial_ptr + w_start * num_blocks
    _grad_term(x0, gx0, w, p, 0, g, offs, _at(offs, b, rem, s0, STRIDED), mask, pid, num_blocks)
    if K > 1:
        _grad_term(x1, gx1, w, p, 1, g, offs, _at(offs, b, rem, s1, STRIDED), mask, pid, num_blocks)
    if K > 2:
        _grad_term(x2, gx2, w, p, 2, g, offs, _at(offs, b, rem, s2, STRIDED), mask, pid, num_blocks)
    if K > 3:
        _grad_term(x3, gx3, w, p, 3, g, offs, _at(offs, b, rem, s3, STRIDED), mask, pid, num_blocks)
    if K > 4:
        _grad_term(x4, gx4, w, p, 4, g, offs, _at(offs, b, rem, s4, STRIDED), mask, pid, num_blocks)
    if K > 5:
        _grad_term(x5, gx5, w, p, 5, g, offs, _at(offs, b, rem, s5, STRIDED), mask, pid, num_blocks)
    if K > 6:
        _grad_term(x6, gx6, w, p, 6, g, offs, _at(offs, b, rem, s6, STRIDED), mask, pid, num_blocks)
    if K > 7:
        _grad_term(x7, gx7, w, p, 7, g, offs, _at(offs, b, rem, s7, STRIDED), mask, pid, num_blocks)
    if K > 8:
        _grad_term(x8, gx8, w, p, 8, g, offs, _at(offs, b, rem, s8, STRIDED), mask, pid, num_blocks)
    if K > 9:
        _grad_term(x9, gx9, w, p, 9, g, offs, _at(offs, b, rem, s9, STRIDED), mask, pid, num_blocks)
    if K > 10:
        _grad_term(
            x10, gx10, w, p, 10, g, offs, _at(offs, b, rem, s10, STRIDED), mask, pid, num_blocks
        )
    if K > 11:
        _grad_term(
            x11, gx11, w, p, 11, g, offs, _at(offs, b, rem, s11, STRIDED), mask, pid, num_blocks
        )
    if K > 12:
        _grad_term(
            x12, gx12, w, p, 12, g, offs, _at(offs, b, rem, s12, STRIDED), mask, pid, num_blocks
        )
    if K > 13:
        _grad_term(
            x13, gx13, w, p, 13, g, offs, _at(offs, b, rem, s13, STRIDED), mask, pid, num_blocks
        )
    if K > 14:
        _grad_term(
            x14, gx14, w, p, 14, g, offs, _at(offs, b, rem, s14, STRIDED), mask, pid, num_blocks
        )
    if K > 15:
        _grad_term(
            x15, gx15, w, p, 15, g, offs, _at(offs, b, rem, s15, STRIDED), mask, pid, num_blocks
        )


def _chunks(n: int) -> list[tuple[int, int]]:
    return [(s, min(s + MAX_INPUTS, n)) for s in range(0, n, MAX_INPUTS)]


def _padded(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fills the unused pointer slots of a launch (never read: K is a constexpr)."""
    return tensors + [tensors[0]] * (MAX_INPUTS - len(tensors))


def _samples_contiguous(x: torch.Tensor) -> bool:
    """Each sample ``x[i]`` dense in row-major order (the batch stride may be anything): true
    of contiguous tensors and of channel slices of a wider tensor (``grouped_edges``)."""
    expected = 1
    for size, stride in zip(reversed(x.shape[1:]), reversed(x.stride()[1:])):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _layout(xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[int] | None, bool]:
    """How the kernels index the inputs: ``(inputs, batch strides, channels_last)``.

    One dense layout shared by all (contiguous or channels_last): flat offsets, no strides.
    Otherwise each input is read sample by sample at its own batch stride (channel slices of a
    grouped edge output are read in place); an input that is not dense per sample is copied.
    """
    if all(x.is_contiguous() for x in xs):
        return xs, None, False
    if xs[0].dim() == 4 and all(x.is_contiguous(memory_format=torch.channels_last) for x in xs):
        return xs, None, True
    xs = [x if _samples_contiguous(x) else x.contiguous() for x in xs]
    return xs, [x.stride(0) if x.dim() else 0 for x in xs], False


def mix_forward(
    xs: list[torch.Tensor], w: torch.Tensor, strides: list[int] | None, channels_last: bool
) -> torch.Tensor:
    ref = xs[0]
    n = ref.numel()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty(ref.shape, device=ref.device, dtype=ref.dtype, memory_format=fmt)
    grid = (triton.cdiv(n, BLOCK),)
    chunks = _chunks(len(xs))
    # Several launches accumulate in fp32; the last one writes the storage dtype.
    acc = (
        out
        if out.dtype == torch.float32
        else torch.empty(n, device=out.device, dtype=torch.float32)
    )
    inner = _inner(ref)
    for i, (start, stop) in enumerate(chunks):
        last = i == len(chunks) - 1
        _mix_fwd_kernel[grid](
            out if last else acc, acc, w, *_padded(xs[start:stop]),
            *_padded_strides(strides, start, stop), n, inner, start,
            K=stop - start, HAS_ACC=i > 0, STRIDED=strides is not None, BLOCK_SIZE=BLOCK,
        )  # fmt: skip
    return out


def mix_backward(
    g: torch.Tensor, xs: list[torch.Tensor], w: torch.Tensor, strides: list[int] | None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``g`` in the output's layout; each input gradient is written in that layout too."""
    n = g.numel()
    num_blocks = triton.cdiv(n, BLOCK)
    partial = torch.empty(len(xs), num_blocks, device=g.device, dtype=torch.float32)
    grads = [torch.empty_like(g, dtype=x.dtype) for x in xs]
    inner = _inner(g)
    for start, stop in _chunks(len(xs)):
        _mix_bwd_kernel[(num_blocks,)](
            g, w, partial, *_padded(xs[start:stop]), *_padded(grads[start:stop]),
            *_padded_strides(strides, start, stop), n, inner, start, num_blocks,
            K=stop - start, STRIDED=strides is not None, BLOCK_SIZE=BLOCK,
        )  # fmt: skip
    return grads, partial.sum(dim=1)


def _inner(x: torch.Tensor) -> int:
    """Elements per sample (at least 1: the kernels divide by it)."""
    return max(1, x.numel() // x.shape[0]) if x.dim() and x.shape[0] else 1


def _padded_strides(strides: list[int] | None, start: int, stop: int) -> list[int]:
    part = [0] * (stop - start) if strides is None else strides[start:stop]
    return part + [0] * (MAX_INPUTS - len(part))


class TritonMix(torch.autograd.Function):
    """Autograd wrapper: ``TritonMix.apply(weights, *outputs)``."""

    @staticmethod
    def forward(ctx, weights: torch.Tensor, *xs: torch.Tensor) -> torch.Tensor:
        xs, strides, channels_last = _layout(list(xs))
        w = weights.detach().float().contiguous()
        ctx.save_for_backward(w, *xs)
        ctx.weights_dtype = weights.dtype
        ctx.strides, ctx.channels_last = strides, channels_last
        return mix_forward(xs, w, strides, channels_last)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        w, *xs = ctx.saved_tensors
        fmt = torch.channels_last if ctx.channels_last else torch.contiguous_format
        g = g.to(xs[0].dtype).contiguous(memory_format=fmt)  # the output's flat layout
        grads, grad_w = mix_backward(g, xs, w, ctx.strides)
        return (grad_w.to(ctx.weights_dtype), *grads)


def triton_mix(outputs: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    return TritonMix.apply(weights, *outputs)
