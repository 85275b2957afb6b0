"""Tests of supernet/ops.py: the candidate-op registry, its factories and their shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from supernet.ops import (
    OPS,
    FactorizedReduce,
    Identity,
    PoolBN,
    Zero,
    build_op,
    build_search_op,
    validate_op_names,
)

ALL_OPS = sorted(OPS)
C = 4
N = 2


def _out_size(size: int, stride: int) -> int:
    """Spatial output size of a stride-``stride`` op: ceil(size / stride)."""
    return -(-size // stride)


def _bn_layers(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("H,W", [(8, 8), (7, 7), (8, 5)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", ALL_OPS)
def test_op_output_shape(name: str, stride: int, H: int, W: int, affine: bool) -> None:
    torch.manual_seed(0)
    op = build_op(name, C, C, stride, affine)
    out = op(torch.randn(N, C, H, W))
    assert out.shape == (N, C, _out_size(H, stride), _out_size(W, stride))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("name", ALL_OPS)
def test_op_bn_affine_follows_flag(name: str, affine: bool) -> None:
    torch.manual_seed(0)
    for stride in (1, 2):
        op = build_op(name, C, C, stride, affine)
        for bn in _bn_layers(op):
            assert bn.affine == affine


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_backward_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    op = build_op(name, C, C, 2, affine=True)
    x = torch.randn(N, C, 8, 8, requires_grad=True)
    op(x).square().sum().backward()
    for pname, p in op.named_parameters():
        assert p.grad is not None, pname


@pytest.mark.parametrize("H", [8, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", ALL_OPS)
def test_search_op_shape_and_non_affine(name: str, stride: int, H: int) -> None:
    torch.manual_seed(0)
    op = build_search_op(name, C, stride)
    out = op(torch.randn(N, C, H, H))
    assert out.shape == (N, C, _out_size(H, stride), _out_size(H, stride))
    for bn in _bn_layers(op):
        assert not bn.affine
    if "pool" in name:
        assert isinstance(op, PoolBN)
        assert len(_bn_layers(op)) == 1


_CHANNEL_CHANGING = [
    (name, stride)
    for name in (
        "none",
        "skip_connect",
        "sep_conv_3x3",
        "dil_conv_3x3",
        "conv_7x1_1x7",
        "nor_conv_1x1",
    )
    for stride in (1, 2)
    if (name, stride) != ("skip_connect", 1)  # see test_skip_connect_channel_change_at_stride_1
]


@pytest.mark.parametrize("name,stride", _CHANNEL_CHANGING)
def test_channel_changing_ops(name: str, stride: int) -> None:
    torch.manual_seed(0)
    op = build_op(name, C, 2 * C, stride, affine=True)
    out = op(torch.randn(N, C, 8, 8))
    assert out.shape == (N, 2 * C, 8 // stride, 8 // stride)


def test_skip_connect_channel_change_at_stride_1() -> None:
    torch.manual_seed(0)
    op = build_op("skip_connect", C, 2 * C, 1, affine=True)
    out = op(torch.randn(N, C, 8, 8))
    assert out.shape == (N, 2 * C, 8, 8)


def test_skip_connect_is_identity_at_stride_1() -> None:
    torch.manual_seed(0)
    op = build_op("skip_connect", C, C, 1, affine=True)
    assert isinstance(op, Identity)
    x = torch.randn(N, C, 5, 5)
    assert torch.equal(op(x), x)
    assert isinstance(build_op("skip_connect", C, C, 2, affine=True), FactorizedReduce)


@pytest.mark.parametrize("name", ["max_pool_3x3", "avg_pool_3x3"])
def test_pools_reject_channel_change(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        build_op(name, C, 2 * C, 1, affine=True)


@pytest.mark.parametrize("builder", ["build_op", "build_search_op", "validate"])
def test_unknown_op_lists_valid_ones(builder: str) -> None:
    with pytest.raises(ValueError) as info:
        if builder == "build_op":
            build_op("sep_conv_9x9", C, C, 1, affine=True)
        elif builder == "build_search_op":
            build_search_op("sep_conv_9x9", C, 1)
        else:
            validate_op_names(["skip_connect", "sep_conv_9x9"])
    msg = str(info.value)
    assert "sep_conv_9x9" in msg
    for name in OPS:
        assert name in msg


@pytest.mark.parametrize("stride", [0, 3, -1])
def test_bad_stride_rejected(stride: int) -> None:
    with pytest.raises(ValueError, match=str(stride)):
        build_op("sep_conv_3x3", C, C, stride, affine=True)


@pytest.mark.parametrize("C_out", [C, 2 * C])
@pytest.mark.parametrize("stride", [1, 2])
def test_zero_is_all_zeros(stride: int, C_out: int) -> None:
    torch.manual_seed(0)
    op = build_op("none", C, C_out, stride, affine=True)
    assert isinstance(op, Zero)
    x = torch.randn(N, C, 7, 8, requires_grad=True)
    out = op(x)
    assert out.shape == (N, C_out, _out_size(7, stride), _out_size(8, stride))
    assert torch.count_nonzero(out) == 0
    assert not list(op.parameters())


@pytest.mark.parametrize("H,W", [(7, 7), (5, 8), (8, 3), (1, 1), (8, 8)])
def test_factorized_reduce_sizes(H: int, W: int) -> None:
    torch.manual_seed(0)
    fr = FactorizedReduce(C, 2 * C, affine=True)
    x = torch.randn(N, C, H, W, requires_grad=True)
    out = fr(x)
    assert out.shape == (N, 2 * C, _out_size(H, 2), _out_size(W, 2))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_factorized_reduce_rejects_odd_channels() -> None:
    with pytest.raises(ValueError, match="5"):
        FactorizedReduce(C, 5)


# --- DepthwiseConv2d: on the CPU the input gradient is a flipped-kernel forward convolution ---
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize(
    "K,padding,dilation", [(3, 1, 1), (5, 2, 1), (3, 2, 2), (5, 4, 2), (3, 0, 1), (5, 1, 2)]
)
def test_depthwise_conv_matches_float64_conv2d(K, padding, dilation, channels_last):
    from supernet.ops import DepthwiseConv2d

    g = torch.Generator().manual_seed(K * 10 + padding + dilation)
    conv = DepthwiseConv2d(5, K, 1, padding, dilation)
    x = torch.randn(3, 5, 11, 9, generator=g)
    if channels_last:
        x, conv = (
            x.contiguous(memory_format=torch.channels_last),
            conv.to(memory_format=torch.channels_last),
        )
    x.requires_grad_()
    y = conv(x)
    dy = torch.randn(y.shape, generator=g)
    dx, dw = torch.autograd.grad(y, (x, conv.weight), dy)
    x64, w64 = x.detach().double().requires_grad_(), conv.weight.detach().double().requires_grad_()
    ref = torch.nn.functional.conv2d(x64, w64, None, 1, padding, dilation, 5)
    rdx, rdw = torch.autograd.grad(ref, (x64, w64), dy.double())
    for got, want in ((y, ref), (dx, rdx), (dw, rdw)):
        assert got.shape == want.shape
        torch.testing.assert_close(got.double(), want.detach(), rtol=1e-5, atol=1e-5)
    assert dx.is_contiguous(memory_format=torch.channels_last) == channels_last


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("size", [(12, 12), (11, 9)])
@pytest.mark.parametrize("K,padding", [(3, 2), (5, 4), (3, 0), (5, 2)])
def test_dilation_two_stride_two_depthwise_conv_matches_float64_conv2d(
    K, padding, size, channels_last, monkeypatch
):
    """dil_conv at stride 2 (dilation = stride): computed on the CPU as a stride-1 convolution
    of x[::2, ::2]: every output and gradient element as float64 ``F.conv2d``, the layout kept."""
    from supernet.kernels import op_kernels
    from supernet.ops import DepthwiseConv2d

    subsampled = []
    original = op_kernels._subsampled
    monkeypatch.setattr(
        op_kernels, "_subsampled", lambda x, s: subsampled.append(s) or original(x, s)
    )
    g = torch.Generator().manual_seed(K + padding + size[1])
    conv = DepthwiseConv2d(6, K, 2, padding, 2)
    x = torch.randn(3, 6, *size, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = conv(x)
    assert subsampled == [2]
    dy = torch.randn(y.shape, generator=g)
    dx, dw = torch.autograd.grad(y, (x, conv.weight), dy)
    x64, w64 = x.detach().double().requires_grad_(), conv.weight.detach().double().requires_grad_()
    ref = torch.nn.functional.conv2d(x64, w64, None, 2, padding, 2, 6)
    rdx, rdw = torch.autograd.grad(ref, (x64, w64), dy.double())
    for got, want in ((y, ref), (dx, rdx), (dw, rdw)):
        assert got.shape == want.shape
        torch.testing.assert_close(got.double(), want.detach(), rtol=1e-5, atol=1e-5)
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert dx.is_contiguous(memory_format=torch.channels_last) == channels_last  # no NCHW detour
    DepthwiseConv2d(6, 3, 2, 1, 2)(x)  # padding not a multiple of the stride: F.conv2d
    assert subsampled == [2]


def test_depthwise_conv_under_cpu_autocast_runs_in_bf16():
    from supernet.ops import DepthwiseConv2d

    torch.manual_seed(0)
    conv = DepthwiseConv2d(4, 3, 1, 2, 2)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        want = torch.nn.functional.conv2d(x, conv.weight, None, 1, 2, 2, 4)
    assert y.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(y, want)
    y.float().square().sum().backward()
    assert x.grad.dtype == conv.weight.grad.dtype == torch.float32
    assert torch.isfinite(x.grad).all() and torch.isfinite(conv.weight.grad).all()


def test_depthwise_conv_keeps_the_conv2d_state_dict():
    from supernet.ops import DepthwiseConv2d

    plain = nn.Conv2d(6, 6, 5, 2, 4, dilation=2, groups=6, bias=False)
    conv = DepthwiseConv2d(6, 5, 2, 4, 2)
    conv.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 9, 9)
    torch.testing.assert_close(conv(x), plain(x))  # stride 2: plain F.conv2d


def test_cpu_stride_one_depthwise_takes_the_flipped_kernel_gradient(monkeypatch):
    from supernet.kernels import op_kernels
    from supernet.ops import DepthwiseConv2d

    calls = []
    original = op_kernels.FlippedKernelInputGrad.apply
    monkeypatch.setattr(
        op_kernels.FlippedKernelInputGrad, "apply", lambda *a: calls.append(a[2:]) or original(*a)
    )
    x = torch.randn(2, 3, 8, 8)
    DepthwiseConv2d(3, 5, 1, 4, 2)(x)
    DepthwiseConv2d(3, 3, 2, 1, 1)(x)  # stride 2: F.conv2d
    assert calls == [(4, 2)]


# --- pointwise_conv2d: 1x1 convolutions as batched matrix products on NCHW inputs ---
def _float64_conv_grads(x, w, stride, groups, dy):
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = torch.nn.functional.conv2d(x64, w64, None, stride, 0, 1, groups)
    return (ref.detach(), *torch.autograd.grad(ref, (x64, w64), dy.double()))


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "sliced"])
@pytest.mark.parametrize("backend", ["matmul", "conv", "auto"])
@pytest.mark.parametrize(
    "N,C,C_out,groups,stride,H,W",
    [
        (3, 6, 9, 3, 1, 7, 5),
        (2, 4, 4, 1, 2, 9, 11),
        (1, 8, 2, 2, (1, 2), 6, 7),
        (2, 5, 3, 1, 1, 1, 1),
    ],
)
def test_pointwise_conv_matches_float64_conv2d(N, C, C_out, groups, stride, H, W, backend, layout):
    from supernet.kernels.op_kernels import pointwise_conv2d

    g = torch.Generator().manual_seed(N * 100 + C * 10 + C_out)
    x = torch.randn(N, C, H + 1, W + 1, generator=g)
    x = x[:, :, 1:, 1:] if layout == "sliced" else x[:, :, :H, :W].contiguous()  # an NCHW view
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.randn(C_out, C // groups, 1, 1, generator=g, requires_grad=True)
    y = pointwise_conv2d(x, w, stride, groups, backend)
    dy = torch.randn(y.shape, generator=g)
    dx, dw = torch.autograd.grad(y, (x, w), dy)
    for got, want in zip((y, dx, dw), _float64_conv_grads(x, w, stride, groups, dy)):
        assert got.shape == want.shape
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_pointwise_matmul_matches_conv_on_gpu(dtype):
    """cuBLAS' batched GEMM against cuDNN's convolution, fp32 and under bf16 autocast (not run
    on a GPU yet)."""
    from supernet.kernels.op_kernels import pointwise_conv2d

    torch.manual_seed(0)
    x = torch.randn(8, 128, 16, 16, device="cuda", requires_grad=True)
    w = torch.randn(128, 16, 1, 1, device="cuda", requires_grad=True)
    outs = []
    for backend in ("conv", "matmul"):
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            y = pointwise_conv2d(x, w, 1, 8, backend)
        outs.append((y, *torch.autograd.grad(y.float().square().sum(), (x, w))))
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    for a, b in zip(*outs):
        assert a.dtype == b.dtype
        torch.testing.assert_close(
            b.float() / a.float().abs().max(), a.float() / a.float().abs().max(), **tol
        )


def test_pointwise_conv_takes_the_matmul_only_for_nchw_inputs(monkeypatch):
    from supernet.kernels import op_kernels

    calls = []
    monkeypatch.setattr(
        op_kernels.torch, "matmul", lambda *a: calls.append(a) or torch.Tensor.matmul(*a)
    )
    x, w = torch.randn(2, 6, 5, 5), torch.randn(4, 3, 1, 1)
    op_kernels.pointwise_conv2d(x, w, 1, 2, "auto")  # CPU: matmul
    op_kernels.pointwise_conv2d(x, w, 1, 2, "matmul")
    op_kernels.pointwise_conv2d(x, w, 1, 2, "conv")
    op_kernels.pointwise_conv2d(x.contiguous(memory_format=torch.channels_last), w, 1, 2, "auto")
    assert len(calls) == 2


def test_pointwise_conv_under_cpu_autocast_runs_in_bf16():
    from supernet.ops import PointwiseConv2d

    torch.manual_seed(0)
    conv = PointwiseConv2d(6, 4, stride=2)
    x = torch.randn(2, 6, 9, 9, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        want = torch.nn.functional.conv2d(x, conv.weight, None, 2)
    assert y.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(y, want)
    y.float().square().sum().backward()
    assert x.grad.dtype == conv.weight.grad.dtype == torch.float32


def test_pointwise_modules_keep_the_conv2d_state_dict():
    from supernet.ops import OPS, PointwiseConv2d

    plain = nn.Conv2d(6, 4, 1, 2, bias=False)
    conv = PointwiseConv2d(6, 4, stride=2)
    conv.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 9, 9)
    torch.testing.assert_close(conv(x), plain(x))
    # the ops that hold 1x1 convolutions: same parameter names and shapes as before
    shapes = {k: tuple(v.shape) for k, v in OPS["sep_conv_3x3"](8, 8, 1, True).state_dict().items()}
    assert shapes["1.2.weight"] == (8, 8, 1, 1) and shapes["0.1.weight"] == (8, 1, 3, 3)
    fr = OPS["skip_connect"](8, 8, 2, True)
    assert isinstance(fr.conv_1, PointwiseConv2d) and tuple(fr.conv_2.weight.shape) == (4, 8, 1, 1)


def test_unknown_pointwise_kernel_lists_the_choices():
    from supernet.kernels.op_kernels import OpKernels
    from supernet.spaces.darts import DartsSpace

    with pytest.raises(ValueError, match=r"pointwise_kernel='cudnn'.*auto, conv, matmul"):
        OpKernels(pointwise="cudnn")
    with pytest.raises(ValueError, match="pointwise_kernel"):
        DartsSpace((3, 8, 8), 5, pointwise_kernel="gemm")
    assert DartsSpace((3, 8, 8), 5, pointwise_kernel="conv").op_kernels.pointwise == "conv"
