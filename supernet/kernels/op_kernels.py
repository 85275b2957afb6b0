"""Backends of the grouped edge ops' batch norm, depthwise and pointwise convolutions.

``search_space.batch_norm_kernel`` and ``search_space.depthwise_kernel`` pick, for the
operations ``supernet.grouped_edges`` issues, PyTorch's kernels (``torch``, the default) or the
Triton ones (``triton``: ``triton_batch_norm``, ``triton_depthwise``), written because
PyTorch's NCHW kernels for these two took 32 and 38.5 ms of a 125 ms bf16 search step on an
H100 (``experiments/bench/README.md``). They have no ``auto`` until a GPU measurement shows
which is faster. Inputs the Triton kernels do not take (channels_last, non-square or unequal
geometry) run PyTorch's.

``search_space.pointwise_kernel`` picks how 1x1 convolutions run (``pointwise_conv2d``):
``conv`` (``F.conv2d``: oneDNN, cuDNN), ``matmul`` (one batched matrix product on NCHW inputs),
or ``auto``: matmul on the CPU, where it is 3-4x faster than oneDNN's NCHW convolution, and
``conv`` on a GPU until a measurement there says otherwise (cuDNN's tensor-core kernels are
NHWC: in NCHW each call transposes its operands, 3,829 of 13,974 kernels of a bf16 H100 step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from supernet.kernels import check_triton_runs

OP_BACKENDS = ("torch", "triton")
POINTWISE_BACKENDS = ("auto", "conv", "matmul")


def resolve_op_backend(name: str, key: str, device: torch.device | None = None) -> str:
    """Checks the backend ``name`` of config key ``key``; with a device, that it runs there."""
    if name not in OP_BACKENDS:
        raise ValueError(
            f"Unknown search_space.{key}={name!r}. Valid choices are: {', '.join(OP_BACKENDS)} "
            "(triton: the Triton kernels for the grouped edge ops, on a GPU)."
        )
    if name == "triton" and device is not None:
        check_triton_runs(device, f"search_space.{key}")
    return name


def check_pointwise_backend(name: str) -> str:
    """Checks ``search_space.pointwise_kernel``."""
    if name not in POINTWISE_BACKENDS:
        raise ValueError(
            f"Unknown search_space.pointwise_kernel={name!r}. Valid choices are: "
            f"{', '.join(POINTWISE_BACKENDS)} (how 1x1 convolutions run: conv = F.conv2d, "
            "matmul = a batched matrix product on NCHW inputs, auto = matmul on the CPU)."
        )
    return name


@dataclass(frozen=True)
class OpKernels:
    """The backends of the grouped edge ops' batch norm, depthwise and pointwise convolutions."""

    batch_norm: str = "torch"
    depthwise: str = "torch"
    pointwise: str = "auto"

    def __post_init__(self) -> None:
        resolve_op_backend(self.batch_norm, "batch_norm_kernel")
        resolve_op_backend(self.depthwise, "depthwise_kernel")
        check_pointwise_backend(self.pointwise)


TORCH_KERNELS = OpKernels()  # the defaults: PyTorch's batch norm and depthwise kernels


def batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    momentum: float,
    eps: float,
    backend: str = "torch",
) -> torch.Tensor:
    """Training-mode ``F.batch_norm``. The Triton kernel takes contiguous 4-d inputs with more
    than one and fewer than 2^30 values per channel (it indexes them in int32); anything else
    (channels_last included, where PyTorch's kernels already split the reduction) runs
    ``F.batch_norm``."""
    if (
        backend == "triton"
        and x.dim() == 4
        and x.is_contiguous()
        and x.shape[1] < x.numel() < x.shape[1] * 2**30
        and resolve_op_backend(backend, "batch_norm_kernel", x.device) == "triton"
    ):
        from supernet.kernels.triton_batch_norm import triton_batch_norm

        return triton_batch_norm(x, running_mean, running_var, weight, bias, momentum, eps)
    return F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)


def _same(pair: int | tuple[int, ...]) -> int | None:
    """The value of a square geometry parameter (``3`` or ``(3, 3)``), else None."""
    values = (pair,) if isinstance(pair, int) else tuple(pair)
    return values[0] if len(set(values)) == 1 else None


def depthwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int | tuple[int, int],
    backend: str = "torch",
) -> torch.Tensor:
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups=C)`` for ``weight`` of shape
    ``[C, 1, K, K]``. The Triton kernel takes contiguous 4-d inputs with a square geometry
    (autocast's dtype applied as ``F.conv2d`` applies it); on the CPU, square
    convolutions whose dilation equals their stride run as stride-1 convolutions of the
    subsampled input, and stride-1 ones take their input gradient from
    ``FlippedKernelInputGrad``, eager or compiled; anything else runs ``F.conv2d``."""
    s, p, d = _same(stride), _same(padding), _same(dilation)
    K = weight.shape[-1]
    square = weight.shape[1] == 1 and K == weight.shape[-2] and isinstance(p, int)
    square = square and s is not None and d is not None
    if (
        backend == "triton"
        and square
        and x.dim() == 4
        and x.is_contiguous()
        and resolve_op_backend(backend, "depthwise_kernel", x.device) == "triton"
    ):
        from supernet.kernels.triton_depthwise import triton_depthwise_conv

        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            x, weight = x.to(dtype), weight.to(dtype)
        return triton_depthwise_conv(x, weight.contiguous(), s, p, d)
    # Compiled graphs too: Inductor calls the same oneDNN convolutions on the CPU (an edge-compiled
    # first-order step: 5.85 s with oneDNN's own backward, 3.57 s with these forms).
    cpu = x.device.type == "cpu" and square
    if cpu and s > 1 and d == s and p % s == 0:
        # Dilation = stride: every tap reads x at multiples of s, so this is the stride-1,
        # dilation-1 convolution of x's (0, 0) polyphase component x[::s, ::s] with padding
        # p / s (the same sums, same output size). oneDNN's stride-2 dilated backward is
        # 8-14x slower than that (``experiments/bench/README.md``).
        x, s, p, d = _subsampled(x, s), 1, p // s, 1
        stride, padding, dilation = s, p, d
    if cpu and s == 1 and 0 <= p <= d * (K - 1):
        return FlippedKernelInputGrad.apply(x, weight, p, d)
    return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out NHWC (and not also NCHW, as size-1 dimensions allow)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _subsampled(x: torch.Tensor, s: int) -> torch.Tensor:
    """``x[:, :, ::s, ::s]``, copied into x's memory format (a strided view of a channels-last
    tensor is not recognised as one: the convolution would return NCHW), with its gradient in
    that format too (``Subsample``)."""
    return Subsample.apply(x, s)


class Subsample(torch.autograd.Function):
    """``x[:, :, ::s, ::s]`` in x's memory format. Autograd's own backward of the two slices
    zero-fills two NCHW gradients whatever x's layout, scatters the NHWC gradient into them and
    hands an NCHW gradient to the NHWC graph; this backward writes one zeroed tensor in x's
    layout. 16x256x32x32, NHWC, CPU, 1 thread, backward plus the add into the input's
    gradient: 17-39 ms -> 10-13 ms per call (8 calls per first-order step)."""

    @staticmethod
    def forward(ctx, x, s: int):
        fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        ctx.s, ctx.shape, ctx.fmt = s, x.shape, fmt
        return x[:, :, ::s, ::s].contiguous(memory_format=fmt)

    @staticmethod
    def backward(ctx, dy):
        s = ctx.s
        dx = torch.empty(ctx.shape, dtype=dy.dtype, device=dy.device, memory_format=ctx.fmt)
        dx.zero_()[:, :, ::s, ::s] = dy
        return dx, None


class FlippedKernelInputGrad(torch.autograd.Function):
    """A stride-1 depthwise convolution whose input gradient is computed as the forward
    convolution of the output gradient with the flipped kernel (the same sums). On the CPU,
    oneDNN's backward-data for depthwise kernels is far slower than its forward: 16x128x32x32,
    NHWC, 1 thread, dilation 2: 5.5 ms (3x3) and 16.8 ms (5x5) against 0.9 and 1.3 ms this way
    (``experiments/bench/README.md``). The weight gradient stays PyTorch's."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x, weight, padding: int, dilation: int):
        ctx.save_for_backward(x, weight)
        ctx.geometry = padding, dilation
        return F.conv2d(x, weight, None, 1, padding, dilation, x.shape[1])

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        padding, dilation = ctx.geometry
        C, K = x.shape[1], weight.shape[-1]
        x, weight = x.to(dy.dtype), weight.to(dy.dtype)  # autocast's dtype, as in forward
        dx = dw = None
        if ctx.needs_input_grad[0]:
            flipped = weight.flip(-1, -2)
            dx = F.conv2d(dy, flipped, None, 1, dilation * (K - 1) - padding, dilation, C)
        if ctx.needs_input_grad[1]:
            dw = torch.ops.aten.convolution_backward(
                dy, x, weight, None, (1, 1), (padding, padding), (dilation, dilation),
                False, (0, 0), C, (False, True, False),
            )[1]  # fmt: skip
        return dx, dw, None, None


def pointwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int] = 1,
    groups: int = 1,
    backend: str = "auto",
) -> torch.Tensor:
    """``F.conv2d(x, weight, None, stride, 0, 1, groups)`` for a 1x1 ``weight`` of shape
    ``[O, C / groups, 1, 1]``.

    ``matmul`` computes it, for NCHW inputs, as one batched matrix product: per sample and
    group, ``[O/g, C/g] @ [C/g, H*W]``, the output already in NCHW, so no layout transposes
    (cuDNN's) and no oneDNN reorders; a stride subsamples first (one copy of the smaller input).
    Channels-last inputs, where the convolution libraries already run a plain matrix product,
    take ``F.conv2d``. ``auto``: ``matmul`` on the CPU, ``conv`` elsewhere (module docstring).
    """
    nchw = x.dim() == 4 and x.stride(1) >= x.stride(2) >= x.stride(3)
    if backend == "auto":
        backend = "matmul" if x.device.type == "cpu" else "conv"
    if backend != "matmul" or not nchw:
        return F.conv2d(x, weight, None, stride, 0, 1, groups)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    if sh > 1 or sw > 1:
        x = x[:, :, ::sh, ::sw]
    n, c, h, w = x.shape
    out = weight.shape[0]
    y = torch.matmul(
        weight.reshape(groups, out // groups, c // groups), x.reshape(n, groups, c // groups, h * w)
    )
    return y.view(n, out, h, w)
