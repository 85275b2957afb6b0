"""Training-mode batch norm of NCHW tensors in Triton, with split (multi-program) reductions.

PyTorch's CUDA batch norm for contiguous NCHW input reduces each channel in one thread block,
for the statistics and again for the backward. The supernet's grouped normalizations have
32-512 channels (a grouped edge op: E edges x C), so at batch 64 those kernels keep few of an
H100's 132 SMs busy: 15 µs (statistics) and 35 µs (backward) on average on 2-17 MB tensors whose
bandwidth floor is 1-6 µs, 32 ms of a 125 ms bf16 search step (``experiments/bench/README.md``).

Here each channel's N*H*W values are cut into chunks and channels x chunks programs share the
work. Forward: one launch writes each chunk's count, mean and M2 (a Welford summary per lane,
merged across lanes and then chunks by Chan's formula: stable where sum-of-squares would
cancel, and one reduction per program, not one per block); a second combines a channel's chunks,
updates the running statistics and normalizes. Backward: one launch writes each chunk's sums of
``dy`` and ``dy * x_hat``; a second combines them and writes the input gradient (and the weight
and bias gradients). Partials are combined in a fixed order (no atomics): the same inputs give
the same bits. Accumulation is in fp32 whatever the storage dtype (fp32, bf16, fp16).

Runs on CUDA tensors, or on CPU tensors through Triton's interpreter (``TRITON_INTERPRET=1``
set before this module is imported), which is how the tests check it against ``F.batch_norm``.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from supernet.kernels import split_reduction

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# The interpreter runs each program in Python: few, large blocks keep it tolerable.
BLOCK = 8192 if INTERPRET else 1024
MAX_CHUNKS = 64  # chunks per channel (a power of two: the combine loads them as one vector)
TARGET_PROGRAMS = 1024  # channels x chunks to aim for (~8 per SM on an H100)


@triton.jit
def _block(off, stop, c, C, HW: tl.constexpr, BLOCK_SIZE: tl.constexpr):
    """The block of flat positions (over N*H*W, int32) of channel ``c`` starting at ``off``, a
    multiple of the block: ``(memory offsets in NCHW, mask)``. The plane size ``HW`` is a
    compile-time constant, so the division is a shift or a multiply (a kernel per spatial size;
    a supernet has three or four); where a block lies within one plane, its sample is one scalar
    and the offsets are visibly contiguous (vector loads)."""
    j = off + tl.arange(0, BLOCK_SIZE)
    if HW % BLOCK_SIZE == 0:
        n = off // HW
    else:
        n = j // HW
    return (n.to(tl.int64) * C + c) * HW + (j - n * HW), j < stop


@triton.jit
def _welford_combine(mean_a, m2_a, n_a, mean_b, m2_b, n_b):
    """Chan et al.'s merge of two (mean, M2, count) summaries (an empty one merges as a no-op)."""
    n = n_a + n_b
    frac = tl.where(n > 0, n_b / tl.maximum(n, 1.0), 0.0)
    delta = mean_b - mean_a
    return mean_a + delta * frac, m2_a + m2_b + delta * delta * n_a * frac, n


@triton.jit
def _stats_kernel(
    x_ptr, count_ptr, mean_ptr, m2_ptr, C, M, chunk, S,
    HW: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):  # fmt: skip
    """Per chunk (count, mean, M2): each lane keeps a Welford summary of the values it reads,
    and the lanes' summaries are merged once at the end (one reduction per program)."""
    c = tl.program_id(0)
    s = tl.program_id(1)
    start = s * chunk
    stop = tl.minimum(start + chunk, M)
    count = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    mean = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for off in range(start, stop, BLOCK_SIZE):
        at, mask = _block(off, stop, c, C, HW, BLOCK_SIZE)
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        count += mask.to(tl.float32)
        delta = tl.where(mask, x - mean, 0.0)
        mean += delta / tl.maximum(count, 1.0)
        m2 += delta * tl.where(mask, x - mean, 0.0)
    mean, m2, count = tl.reduce((mean, m2, count), 0, _welford_combine)
    tl.store(count_ptr + c * S + s, count)
    tl.store(mean_ptr + c * S + s, mean)
    tl.store(m2_ptr + c * S + s, m2)


@triton.jit
def _normalize_kernel(
    x_ptr, y_ptr, count_ptr, part_mean_ptr, m2_ptr, mean_ptr, rstd_ptr,
    running_mean_ptr, running_var_ptr, w_ptr, b_ptr,
    C, M, chunk, S, momentum, eps,
    HW: tl.constexpr, S_PAD: tl.constexpr, HAS_RUNNING: tl.constexpr, HAS_AFFINE: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0)
    s = tl.program_id(1)
    i = tl.arange(0, S_PAD)
    valid = i < S
    n_i = tl.load(count_ptr + c * S + i, mask=valid, other=0.0)
    mean_i = tl.load(part_mean_ptr + c * S + i, mask=valid, other=0.0)
    m2_i = tl.load(m2_ptr + c * S + i, mask=valid, other=0.0)
    total = tl.sum(n_i, axis=0)
    mean = tl.sum(n_i * mean_i, axis=0) / total
    d = mean_i - mean
    m2 = tl.sum(m2_i + n_i * d * d, axis=0)
    rstd = 1.0 / tl.sqrt(m2 / total + eps)
    if s == 0:
        tl.store(mean_ptr + c, mean)
        tl.store(rstd_ptr + c, rstd)
        if HAS_RUNNING:  # PyTorch's update: biased variance normalizes, unbiased is tracked
            old_mean = tl.load(running_mean_ptr + c).to(tl.float32)
            old_var = tl.load(running_var_ptr + c).to(tl.float32)
            new_mean = (1.0 - momentum) * old_mean + momentum * mean
            new_var = (1.0 - momentum) * old_var + momentum * (m2 / (total - 1.0))
            tl.store(running_mean_ptr + c, new_mean.to(running_mean_ptr.dtype.element_ty))
            tl.store(running_var_ptr + c, new_var.to(running_var_ptr.dtype.element_ty))
    scale = rstd
    shift = -mean * rstd
    if HAS_AFFINE:
        scale = tl.load(w_ptr + c).to(tl.float32) * rstd
        shift = tl.load(b_ptr + c).to(tl.float32) - mean * scale
    start = s * chunk
    stop = tl.minimum(start + chunk, M)
    for off in range(start, stop, BLOCK_SIZE):
        at, mask = _block(off, stop, c, C, HW, BLOCK_SIZE)
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        y = x * scale + shift
        tl.store(y_ptr + at, y.to(y_ptr.dtype.element_ty, fp_downcast_rounding="rtne"), mask=mask)


@triton.jit
def _grad_sums_kernel(
    x_ptr, dy_ptr, mean_ptr, rstd_ptr, sum_dy_ptr, sum_dyx_ptr, C, M, chunk, S,
    HW: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0)
    s = tl.program_id(1)
    mean = tl.load(mean_ptr + c)
    rstd = tl.load(rstd_ptr + c)
    start = s * chunk
    stop = tl.minimum(start + chunk, M)
    sum_dy = tl.zeros([BLOCK_SIZE], dtype=tl.float32)  # per lane, reduced once at the end
    sum_dyx = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for off in range(start, stop, BLOCK_SIZE):
        at, mask = _block(off, stop, c, C, HW, BLOCK_SIZE)
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + at, mask=mask, other=0.0).to(tl.float32)
        sum_dy += dy
        sum_dyx += dy * tl.where(mask, (x - mean) * rstd, 0.0)
    tl.store(sum_dy_ptr + c * S + s, tl.sum(sum_dy, axis=0))
    tl.store(sum_dyx_ptr + c * S + s, tl.sum(sum_dyx, axis=0))


@triton.jit
def _grad_input_kernel(
    x_ptr, dy_ptr, dx_ptr, mean_ptr, rstd_ptr, sum_dy_ptr, sum_dyx_ptr, w_ptr, dw_ptr, db_ptr,
    C, M, chunk, S,
    HW: tl.constexpr, S_PAD: tl.constexpr, HAS_AFFINE: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0)
    s = tl.program_id(1)
    i = tl.arange(0, S_PAD)
    valid = i < S
    sum_dy = tl.sum(tl.load(sum_dy_ptr + c * S + i, mask=valid, other=0.0), axis=0)
    sum_dyx = tl.sum(tl.load(sum_dyx_ptr + c * S + i, mask=valid, other=0.0), axis=0)
    mean = tl.load(mean_ptr + c)
    rstd = tl.load(rstd_ptr + c)
    gain = rstd
    if HAS_AFFINE:
        gain = tl.load(w_ptr + c).to(tl.float32) * rstd
        if s == 0:
            tl.store(dw_ptr + c, sum_dyx)
            tl.store(db_ptr + c, sum_dy)
    mean_dy = sum_dy / M
    mean_dyx = sum_dyx / M
    start = s * chunk
    stop = tl.minimum(start + chunk, M)
    for off in range(start, stop, BLOCK_SIZE):
        at, mask = _block(off, stop, c, C, HW, BLOCK_SIZE)
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + at, mask=mask, other=0.0).to(tl.float32)
        dx = gain * (dy - mean_dy - (x - mean) * rstd * mean_dyx)
        tl.store(
            dx_ptr + at, dx.to(dx_ptr.dtype.element_ty, fp_downcast_rounding="rtne"), mask=mask
        )


def plan(C: int, M: int) -> tuple[int, int, int]:
    """``(block, chunk, chunks)``: each channel's M values in ``chunks`` runs of ``chunk`` (a
    multiple of the block: at most ``BLOCK``, less for small M), enough programs to fill the GPU,
    none empty. Depends on the shape only, so a shape is always reduced in the same order."""
    block = min(BLOCK, triton.next_power_of_2(M))
    return block, *split_reduction(C, M, block, TARGET_PROGRAMS, MAX_CHUNKS)


def batch_norm_forward(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    momentum: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, mean, rstd)`` of contiguous NCHW ``x``; the running statistics are updated in place."""
    N, C, H, W = x.shape
    M = N * H * W
    block, chunk, S = plan(C, M)
    f32 = dict(device=x.device, dtype=torch.float32)
    count, part_mean, m2 = (torch.empty(C, S, **f32) for _ in range(3))
    mean, rstd = torch.empty(C, **f32), torch.empty(C, **f32)
    y = torch.empty_like(x)
    grid = (C, S)
    _stats_kernel[grid](x, count, part_mean, m2, C, M, chunk, S, HW=H * W, BLOCK_SIZE=block)
    has_running = running_mean is not None
    has_affine = weight is not None
    _normalize_kernel[grid](
        x, y, count, part_mean, m2, mean, rstd,
        running_mean if has_running else mean, running_var if has_running else rstd,
        weight if has_affine else mean, bias if has_affine else mean,
        C, M, chunk, S, float(momentum), float(eps),
        HW=H * W, S_PAD=triton.next_power_of_2(S), HAS_RUNNING=has_running, HAS_AFFINE=has_affine,
        BLOCK_SIZE=block,
    )  # fmt: skip
    return y, mean, rstd


def batch_norm_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    mean: torch.Tensor,
    rstd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(dx, dweight, dbias)`` (the last two None without an affine transform)."""
    N, C, H, W = x.shape
    M = N * H * W
    block, chunk, S = plan(C, M)
    f32 = dict(device=x.device, dtype=torch.float32)
    sum_dy, sum_dyx = torch.empty(C, S, **f32), torch.empty(C, S, **f32)
    grid = (C, S)
    _grad_sums_kernel[grid](
        x, dy, mean, rstd, sum_dy, sum_dyx, C, M, chunk, S, HW=H * W, BLOCK_SIZE=block
    )
    has_affine = weight is not None
    dw = torch.empty(C, **f32) if has_affine else None
    db = torch.empty(C, **f32) if has_affine else None
    dx = torch.empty_like(x)
    _grad_input_kernel[grid](
        x, dy, dx, mean, rstd, sum_dy, sum_dyx,
        weight if has_affine else mean, dw if has_affine else mean, db if has_affine else mean,
        C, M, chunk, S,
        HW=H * W, S_PAD=triton.next_power_of_2(S), HAS_AFFINE=has_affine, BLOCK_SIZE=block,
    )  # fmt: skip
    if has_affine:
        dw, db = dw.to(weight.dtype), db.to(weight.dtype)
    return dx, dw, db


class TritonBatchNorm(torch.autograd.Function):
    """Autograd wrapper, arguments in ``F.batch_norm``'s order (training mode implied)."""

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, momentum, eps):
        y, mean, rstd = batch_norm_forward(
            x, weight, bias, running_mean, running_var, momentum, eps
        )
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        dx, dw, db = batch_norm_backward(dy.to(x.dtype).contiguous(), x, weight, mean, rstd)
        return dx, None, None, dw, db, None, None


# ``F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)`` for contiguous
# 4-d ``x`` with more than one value per channel.
triton_batch_norm = TritonBatchNorm.apply
