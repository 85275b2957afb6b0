"""Fused mixed-op weighted sum in Triton: ``out = sum_k w[k] * x_k`` with its backward.

The eager sum makes one pass over memory per candidate for the products and one for the adds
(forward) and again per candidate for ``w_k * g`` and ``sum(g * x_k)`` (backward). Here one
launch reads up to ``MAX_INPUTS`` candidates once and writes the output once (forward), and
one launch reads ``g`` once, writes every ``grad x_k`` and a per-block partial of every
``grad w_k`` (backward). Partials are reduced by a fixed-order sum, so results do not depend on
scheduling (no float atomics). Accumulation is in fp32 whatever the storage dtype (fp32, bf16).
A candidate whose weight is exactly zero is not read in the forward pass (checked on the device).

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
def _load_term(x_ptr, w_ptr, k, offs, mask, acc):
    w = tl.load(w_ptr + k).to(tl.float32)
    if w != 0.0:  # a zero-weight candidate is never read
        acc += w * tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    return acc


@triton.jit
def _mix_fwd_kernel(
    dst_ptr, acc_ptr, w_ptr,
    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15,
    n_elements, w_start,
    K: tl.constexpr, HAS_ACC: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < n_elements
    if HAS_ACC:
        acc = tl.load(acc_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        acc = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    w = w_ptr + w_start
    acc = _load_term(x0, w, 0, offs, mask, acc)
    if K > 1:
        acc = _load_term(x1, w, 1, offs, mask, acc)
    if K > 2:
        acc = _load_term(x2, w, 2, offs, mask, acc)
    if K > 3:
        acc = _load_term(x3, w, 3, offs, mask, acc)
    if K > 4:
        acc = _load_term(x4, w, 4, offs, mask, acc)
    if K > 5:
        acc = _load_term(x5, w, 5, offs, mask, acc)
    if K > 6:
        acc = _load_term(x6, w, 6, offs, mask, acc)
    if K > 7:
        acc = _load_term(x7, w, 7, offs, mask, acc)
    if K > 8:
        acc = _load_term(x8, w, 8, offs, mask, acc)
    if K > 9:
        acc = _load_term(x9, w, 9, offs, mask, acc)
    if K > 10:
        acc = _load_term(x10, w, 10, offs, mask, acc)
    if K > 11:
        acc = _load_term(x11, w, 11, offs, mask, acc)
    if K > 12:
        acc = _load_term(x12, w, 12, offs, mask, acc)
    if K > 13:
        acc = _load_term(x13, w, 13, offs, mask, acc)
    if K > 14:
        acc = _load_term(x14, w, 14, offs, mask, acc)
    if K > 15:
        acc = _load_term(x15, w, 15, offs, mask, acc)
    tl.store(
        dst_ptr + offs, acc.to(dst_ptr.dtype.element_ty, fp_downcast_rounding="rtne"), mask=mask
    )


@triton.jit
def _grad_term(x_ptr, gx_ptr, w_ptr, partial_ptr, k, g, offs, mask, pid, num_blocks):
    w = tl.load(w_ptr + k).to(tl.float32)
    tl.store(
        gx_ptr + offs, (w * g).to(gx_ptr.dtype.element_ty, fp_downcast_rounding="rtne"), mask=mask
    )
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(partial_ptr + k * num_blocks + pid, tl.sum(g * x, axis=0))


@triton.jit
def _mix_bwd_kernel(
    g_ptr, w_ptr, partial_ptr,
    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15,
    gx0, gx1, gx2, gx3, gx4, gx5, gx6, gx7, gx8, gx9, gx10, gx11, gx12, gx13, gx14, gx15,
    n_elements, w_start, num_blocks,
    K: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < n_elements
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    w = w_ptr + w_start
    p = partial_ptr + w_start * num_blocks
    _grad_term(x0, gx0, w, p, 0, g, offs, mask, pid, num_blocks)
    if K > 1:
        _grad_term(x1, gx1, w, p, 1, g, offs, mask, pid, num_blocks)
    if K > 2:
        _grad_term(x2, gx2, w, p, 2, g, offs, mask, pid, num_blocks)
    if K > 3:
        _grad_term(x3, gx3, w, p, 3, g, offs, mask, pid, num_blocks)
    if K > 4:
        _grad_term(x4, gx4, w, p, 4, g, offs, mask, pid, num_blocks)
    if K > 5:
        _grad_term(x5, gx5, w, p, 5, g, offs, mask, pid, num_blocks)
    if K > 6:
        _grad_term(x6, gx6, w, p, 6, g, offs, mask, pid, num_blocks)
    if K > 7:
        _grad_term(x7, gx7, w, p, 7, g, offs, mask, pid, num_blocks)
    if K > 8:
        _grad_term(x8, gx8, w, p, 8, g, offs, mask, pid, num_blocks)
    if K > 9:
        _grad_term(x9, gx9, w, p, 9, g, offs, mask, pid, num_blocks)
    if K > 10:
        _grad_term(x10, gx10, w, p, 10, g, offs, mask, pid, num_blocks)
    if K > 11:
        _grad_term(x11, gx11, w, p, 11, g, offs, mask, pid, num_blocks)
    if K > 12:
        _grad_term(x12, gx12, w, p, 12, g, offs, mask, pid, num_blocks)
    if K > 13:
        _grad_term(x13, gx13, w, p, 13, g, offs, mask, pid, num_blocks)
    if K > 14:
        _grad_term(x14, gx14, w, p, 14, g, offs, mask, pid, num_blocks)
    if K > 15:
        _grad_term(x15, gx15, w, p, 15, g, offs, mask, pid, num_blocks)


def _chunks(n: int) -> list[tuple[int, int]]:
    return [(s, min(s + MAX_INPUTS, n)) for s in range(0, n, MAX_INPUTS)]


def _padded(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fills the unused pointer slots of a launch (never read: K is a constexpr)."""
    return tensors + [tensors[0]] * (MAX_INPUTS - len(tensors))


def _dense_alike(xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Flat indexing needs one dense layout shared by all (contiguous or channels_last)."""
    ref = xs[0]
    fmt = (
        torch.channels_last
        if ref.dim() == 4
        and not ref.is_contiguous()
        and ref.is_contiguous(memory_format=torch.channels_last)
        else torch.contiguous_format
    )
    return [
        x if x.is_contiguous(memory_format=fmt) else x.contiguous(memory_format=fmt) for x in xs
    ]


def mix_forward(xs: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    n = xs[0].numel()
    out = torch.empty_like(xs[0])
    grid = (triton.cdiv(n, BLOCK),)
    chunks = _chunks(len(xs))
    # Several launches accumulate in fp32; the last one writes the storage dtype.
    acc = (
        out
        if out.dtype == torch.float32
        else torch.empty(n, device=out.device, dtype=torch.float32)
    )
    for i, (start, stop) in enumerate(chunks):
        last = i == len(chunks) - 1
        _mix_fwd_kernel[grid](
            out if last else acc, acc, w, *_padded(xs[start:stop]), n, start,
            K=stop - start, HAS_ACC=i > 0, BLOCK_SIZE=BLOCK,
        )  # fmt: skip
    return out


def mix_backward(
    g: torch.Tensor, xs: list[torch.Tensor], w: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    n = g.numel()
    num_blocks = triton.cdiv(n, BLOCK)
    partial = torch.empty(len(xs), num_blocks, device=g.device, dtype=torch.float32)
    grads = [torch.empty_like(x) for x in xs]
    for start, stop in _chunks(len(xs)):
        _mix_bwd_kernel[(num_blocks,)](
            g, w, partial, *_padded(xs[start:stop]), *_padded(grads[start:stop]),
            n, start, num_blocks, K=stop - start, BLOCK_SIZE=BLOCK,
        )  # fmt: skip
    return grads, partial.sum(dim=1)


class TritonMix(torch.autograd.Function):
    """Autograd wrapper: ``TritonMix.apply(weights, *outputs)``."""

    @staticmethod
    def forward(ctx, weights: torch.Tensor, *xs: torch.Tensor) -> torch.Tensor:
        xs = tuple(_dense_alike(list(xs)))
        w = weights.detach().float().contiguous()
        ctx.save_for_backward(w, *xs)
        ctx.weights_dtype = weights.dtype
        return mix_forward(list(xs), w)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        w, *xs = ctx.saved_tensors
        fmt = torch.contiguous_format if xs[0].is_contiguous() else torch.channels_last
        g = g.to(xs[0].dtype).contiguous(memory_format=fmt)  # the same flat layout as xs
        grads, grad_w = mix_backward(g, xs, w)
        return (grad_w.to(ctx.weights_dtype), *grads)


def triton_mix(outputs: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    return TritonMix.apply(weights, *outputs)
