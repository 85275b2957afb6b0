"""Depthwise 2-d convolution of NCHW tensors in Triton: forward, input and weight gradients.

The sep/dil conv candidates of a grouped edge op start with a depthwise convolution of E x C
channels (3x3 or 5x5, dilation 1 or 2, stride 1 or 2). PyTorch runs those on its native CUDA
kernels; on an H100 at batch 64, bf16, they took 38.5 ms of a 125 ms first-order search step
(``experiments/bench/README.md``): the weight gradient 63 µs per call (one block per weight
tap), the stride-2 input gradient 200-280 µs, against a bandwidth floor of ~11 µs for the
largest (64 x 128 x 32 x 32) tensors.

Layout of the work: output rows of all planes (``n*C + c``) in tiles of ``BLOCK_H`` rows x
``BLOCK_W >= W_out`` columns, so small planes share a program; the kernel size, stride,
dilation, padding and plane sizes are compile-time constants (a handful of variants per
supernet), so the row/plane arithmetic has no runtime division. The weight gradient reduces each
channel over samples in chunks (channels x chunks programs), writes per-chunk partials and sums
them in a fixed order (deterministic, no atomics). Accumulation is in fp32 whatever the storage
dtype. Runs on CUDA tensors, or on CPU tensors through Triton's interpreter
(``TRITON_INTERPRET=1`` set before import), which is how the tests check it against
``F.conv2d``.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from supernet.kernels import split_reduction

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# Elements per program (rows x columns); the interpreter runs each program in Python.
TILE = 16384 if INTERPRET else 1024
# The weight gradient holds a [taps, tile] fp32 block per program: a smaller tile on a GPU
# (32 x 128 values = 32 registers per thread at 4 warps).
WEIGHT_GRAD_TILE = 4096 if INTERPRET else 128
TARGET_PROGRAMS = 1024  # weight gradient: channels x chunks to aim for
MAX_CHUNKS = 64


@triton.jit
def _dw_forward_kernel(
    x_ptr, w_ptr, y_ptr, rows,
    C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, HO: tl.constexpr, WO: tl.constexpr,
    K: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr, DIL: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]  # output rows, all planes
    ow = tl.arange(0, BLOCK_W)[None, :]
    plane = r // HO
    oh = r - plane * HO
    c = plane % C
    out_mask = (r < rows) & (ow < WO)
    x_plane = x_ptr + plane.to(tl.int64) * (H * W)
    acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
    for kh in tl.static_range(K):
        ih = oh * STRIDE - PAD + kh * DIL
        row_ok = out_mask & (ih >= 0) & (ih < H)
        for kw in tl.static_range(K):
            iw = ow * STRIDE - PAD + kw * DIL
            m = row_ok & (iw >= 0) & (iw < W)
            x = tl.load(x_plane + ih * W + iw, mask=m, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + c * (K * K) + (kh * K + kw), mask=r < rows, other=0.0)
            acc += x * w.to(tl.float32)
    y = acc.to(y_ptr.dtype.element_ty, fp_downcast_rounding="rtne")
    tl.store(y_ptr + plane.to(tl.int64) * (HO * WO) + oh * WO + ow, y, mask=out_mask)


@triton.jit
def _dw_input_grad_kernel(
    dy_ptr, w_ptr, dx_ptr, rows,
    C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, HO: tl.constexpr, WO: tl.constexpr,
    K: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr, DIL: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """``dx[ih, iw] = sum over taps of w[kh, kw] * dy[oh, ow]`` where ``oh * STRIDE - PAD +
    kh * DIL == ih`` (and alike for the columns): a gather, no scattered adds."""
    r = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]  # input rows, all planes
    iw = tl.arange(0, BLOCK_W)[None, :]
    plane = r // H
    ih = r - plane * H
    c = plane % C
    in_mask = (r < rows) & (iw < W)
    dy_plane = dy_ptr + plane.to(tl.int64) * (HO * WO)
    acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
    for kh in tl.static_range(K):
        th = ih + PAD - kh * DIL
        oh = th // STRIDE
        row_ok = in_mask & (th >= 0) & (oh < HO)
        if STRIDE > 1:
            row_ok = row_ok & (th % STRIDE == 0)
        for kw in tl.static_range(K):
            tw = iw + PAD - kw * DIL
            ow = tw // STRIDE
            m = row_ok & (tw >= 0) & (ow < WO)
            if STRIDE > 1:
                m = m & (tw % STRIDE == 0)
            dy = tl.load(dy_plane + oh * WO + ow, mask=m, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + c * (K * K) + (kh * K + kw), mask=r < rows, other=0.0)
            acc += dy * w.to(tl.float32)
    dx = acc.to(dx_ptr.dtype.element_ty, fp_downcast_rounding="rtne")
    tl.store(dx_ptr + plane.to(tl.int64) * (H * W) + ih * W + iw, dx, mask=in_mask)


@triton.jit
def _dw_weight_grad_kernel(
    x_ptr, dy_ptr, partial_ptr, chunk_rows, total_rows, S,
    C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, HO: tl.constexpr, WO: tl.constexpr,
    K: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr, DIL: tl.constexpr,
    TAPS: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """Per channel ``c`` and chunk ``s`` of its output rows (over samples), the partial
    ``sum dy[oh, ow] * x[oh * STRIDE - PAD + kh * DIL, ...]`` of every tap, at
    ``partial[c, s, kh * K + kw]``. All taps' products accumulate elementwise in one
    ``[taps, tile]`` block (one gathered load of x per tile) and are summed once at the end:
    no reduction per tile and tap."""
    c = tl.program_id(0)
    s = tl.program_id(1)
    tap = tl.arange(0, TAPS)[:, None]
    kh = tap // K
    kw = tap - kh * K
    e = tl.arange(0, BLOCK_H * BLOCK_W)[None, :]  # flat tile element
    row = e // BLOCK_W
    ow = e - row * BLOCK_W
    acc = tl.zeros([TAPS, BLOCK_H * BLOCK_W], dtype=tl.float32)
    start = s * chunk_rows
    stop = tl.minimum(start + chunk_rows, total_rows)
    for off in range(start, stop, BLOCK_H):
        r = off + row  # output rows of channel c, over samples
        n = r // HO
        oh = r - n * HO
        plane = (n * C + c).to(tl.int64)
        out_mask = (r < stop) & (ow < WO)
        dy = tl.load(dy_ptr + plane * (HO * WO) + oh * WO + ow, mask=out_mask, other=0.0)
        ih = oh * STRIDE - PAD + kh * DIL
        iw = ow * STRIDE - PAD + kw * DIL
        m = out_mask & (tap < K * K) & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        x = tl.load(x_ptr + plane * (H * W) + ih * W + iw, mask=m, other=0.0)
        acc += x.to(tl.float32) * dy.to(tl.float32)
    tl.store(partial_ptr + (c * S + s) * TAPS + tl.arange(0, TAPS), tl.sum(acc, axis=1))


def _tile(width: int, rows: int, budget: int | None = None) -> tuple[int, int]:
    """``(BLOCK_H, BLOCK_W)``: whole rows (``BLOCK_W`` the row width's power of two), about
    ``budget`` (default ``TILE``) elements per tile, no more rows than there are."""
    block_w = triton.next_power_of_2(width)
    budget = TILE if budget is None else budget
    return max(1, min(budget // block_w, triton.next_power_of_2(rows))), block_w


def _geometry(x_shape: torch.Size, weight: torch.Tensor, stride: int, padding: int, dilation: int):
    """The kernels' compile-time constants for input ``x_shape`` (NCHW)."""
    N, C, H, W = x_shape
    K = weight.shape[-1]
    HO = (H + 2 * padding - dilation * (K - 1) - 1) // stride + 1
    WO = (W + 2 * padding - dilation * (K - 1) - 1) // stride + 1
    return dict(C=C, H=H, W=W, HO=HO, WO=WO, K=K, STRIDE=stride, PAD=padding, DIL=dilation)


def depthwise_forward(x, weight, stride: int, padding: int, dilation: int) -> torch.Tensor:
    g = _geometry(x.shape, weight, stride, padding, dilation)
    N = x.shape[0]
    y = torch.empty(N, g["C"], g["HO"], g["WO"], device=x.device, dtype=x.dtype)
    rows = N * g["C"] * g["HO"]
    block_h, block_w = _tile(g["WO"], rows)
    _dw_forward_kernel[(triton.cdiv(rows, block_h),)](
        x, weight, y, rows, **g, BLOCK_H=block_h, BLOCK_W=block_w
    )
    return y


def depthwise_input_grad(dy, weight, x_shape, stride: int, padding: int, dilation: int):
    g = _geometry(x_shape, weight, stride, padding, dilation)
    N = x_shape[0]
    dx = torch.empty(x_shape, device=dy.device, dtype=dy.dtype)
    rows = N * g["C"] * g["H"]
    block_h, block_w = _tile(g["W"], rows)
    _dw_input_grad_kernel[(triton.cdiv(rows, block_h),)](
        dy, weight, dx, rows, **g, BLOCK_H=block_h, BLOCK_W=block_w
    )
    return dx


def weight_grad_plan(C: int, total_rows: int, block_h: int) -> tuple[int, int]:
    """``(chunk_rows, chunks)``: each channel's output rows (over samples) in ``chunks`` runs of
    ``chunk_rows`` (a multiple of the tile's rows), none empty. Depends on the shape only."""
    return split_reduction(C, total_rows, block_h, TARGET_PROGRAMS, MAX_CHUNKS)


def depthwise_weight_grad(x, dy, weight, stride: int, padding: int, dilation: int):
    g = _geometry(x.shape, weight, stride, padding, dilation)
    taps = g["K"] * g["K"]
    total_rows = x.shape[0] * g["HO"]
    block_h, block_w = _tile(g["WO"], total_rows, WEIGHT_GRAD_TILE)
    chunk, S = weight_grad_plan(g["C"], total_rows, block_h)
    partial = torch.empty(
        g["C"], S, triton.next_power_of_2(taps), device=x.device, dtype=torch.float32
    )
    _dw_weight_grad_kernel[(g["C"], S)](
        x, dy, partial, chunk, total_rows, S, **g,
        TAPS=partial.shape[-1], BLOCK_H=block_h, BLOCK_W=block_w,
    )  # fmt: skip
    # A fixed-order sum over the chunks (PyTorch's reductions use no atomics)
    return partial.sum(dim=1)[:, :taps].reshape(weight.shape).to(weight.dtype)


class TritonDepthwiseConv(torch.autograd.Function):
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups=C)`` with ``weight`` of
    shape ``[C, 1, K, K]``."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, dilation)
        return depthwise_forward(x, weight, stride, padding, dilation)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dy = dy.to(x.dtype).contiguous()
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = depthwise_input_grad(dy, weight, x.shape, *ctx.geometry)
        if ctx.needs_input_grad[1]:
            dw = depthwise_weight_grad(x, dy, weight, *ctx.geometry)
        return dx, dw, None, None, None


triton_depthwise_conv = TritonDepthwiseConv.apply
