"""Candidate operations, one registry keyed by name.

Every factory has the signature ``(C_in, C_out, stride, affine) -> nn.Module``. The
DARTS primitives follow Liu et al., "DARTS: Differentiable Architecture Search" (ICLR 2019):
separable convolutions are applied twice, dilated convolutions once, and every
convolution is preceded by a ReLU (ReLU-Conv-BN order).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from supernet.kernels.op_kernels import depthwise_conv2d, pointwise_conv2d

OpFactory = Callable[[int, int, int, bool], nn.Module]


class StartsWithReLU(nn.Sequential):
    """A sequence whose first module is a ReLU of the input. ``after_relu(relu(x))`` equals
    ``forward(x)``, so the candidates of one edge can share one ReLU (``MixedOp``)."""

    def after_relu(self, r: torch.Tensor) -> torch.Tensor:
        for i, module in enumerate(self):
            if i:
                r = module(r)
        return r


class ReLUConvBN(StartsWithReLU):
    """ReLU, convolution, batch norm: the DARTS preprocessing and NAS-Bench-201 conv block."""

    def __init__(
        self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            PointwiseConv2d(C_in, C_out, stride)
            if kernel == 1 and padding == 0
            else nn.Conv2d(C_in, C_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise convolution (``groups=C``, no bias) through ``op_kernels.depthwise_conv2d``:
    on the CPU its input gradient is a forward convolution with the flipped kernel, several times
    faster than oneDNN's backward-data for dilated kernels; elsewhere ``F.conv2d``."""

    def __init__(self, C: int, kernel: int, stride: int, padding: int, dilation: int = 1):
        super().__init__(C, C, kernel, stride, padding, dilation=dilation, groups=C, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv2d(x, self.weight, self.stride, self.padding, self.dilation)


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution (no bias) through ``op_kernels.pointwise_conv2d``: on the CPU, for
    NCHW inputs, a batched matrix product (3-4x faster than oneDNN's NCHW convolution);
    elsewhere ``F.conv2d``."""

    def __init__(self, C_in: int, C_out: int, stride: int = 1):
        super().__init__(C_in, C_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise_conv2d(x, self.weight, self.stride, self.groups)


class DilConv(StartsWithReLU):
    """ReLU, depthwise (dilated) convolution, pointwise convolution, batch norm."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(C_in, kernel, stride, padding, dilation),
            PointwiseConv2d(C_in, C_out),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked dilation-1 DilConvs; only the first one carries the stride (DARTS)."""

    def __init__(
        self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ):
        super().__init__(
            DilConv(C_in, C_in, kernel, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel, 1, padding, 1, affine),
        )

    def after_relu(self, r: torch.Tensor) -> torch.Tensor:
        return self[1](self[0].after_relu(r))


class Identity(nn.Module):
    """Skip connection at stride 1. Kept as its own class so drop path can recognise it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (stride subsamples, channels may change)."""

    def __init__(self, C_out: int, stride: int):
        super().__init__()
        self.C_out = C_out
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        if x.shape[1] != self.C_out:
            shape = (x.shape[0], self.C_out, *x.shape[2:])
            return x.new_zeros(shape)
        return x.mul(0.0)


class FactorizedReduce(nn.Module):
    """Halves resolution with two offset stride-2 1x1 convolutions, concatenated (DARTS).

    The second path is shifted by one pixel (one diagonal offset), so the two paths sample
    the even/even and odd/odd pixels.
    Odd input sizes are padded on the bottom/right so both paths agree in shape.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(
                f"FactorizedReduce needs an even number of output channels, got {C_out}."
            )
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = PointwiseConv2d(C_in, C_out // 2, stride=2)
        self.conv_2 = PointwiseConv2d(C_in, C_out // 2, stride=2)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_relu(self.relu(x))

    def after_relu(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` given the ReLU of its input (shared with an edge's other candidates)."""
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            x = nn.functional.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        out = torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1)
        return self.bn(out)


def preprocess_previous(C_pp: int, C: int, reduction_prev: bool, affine: bool) -> nn.Module:
    """A DARTS-style cell's preprocessing of the previous-previous cell's output: halved by a
    ``FactorizedReduce`` when the previous cell reduced (so it matches the previous output),
    otherwise ReLU-Conv1x1-BN."""
    if reduction_prev:
        return FactorizedReduce(C_pp, C, affine=affine)
    return ReLUConvBN(C_pp, C, 1, 1, 0, affine=affine)


class PoolBN(nn.Sequential):
    """A pooling op followed by non-affine BN, as DARTS' search cells use for pools.

    The BN rescales the parameter-free pooling output to the scale of the conv ops.
    """

    def __init__(self, pool: nn.Module, C: int):
        super().__init__(pool, nn.BatchNorm2d(C, affine=False))


def drop_path(x: torch.Tensor, drop_prob: float | torch.Tensor) -> torch.Tensor:
    """Zeroes whole samples of a path with probability ``drop_prob``, rescaling the rest."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


def drop_path_applies(training: bool, drop_prob: float | torch.Tensor) -> bool:
    """Whether a cell drops paths: in training, with a positive float or a tensor probability
    (a network's ramped buffer, see ``DropPathProb``: its value is not read on the host)."""
    return training and (torch.is_tensor(drop_prob) or drop_prob > 0)


class DropPathProb:
    """``drop_path_prob`` of a network (mixin for ``nn.Module``), kept in a 0-dim buffer that
    is updated in place.

    Retraining ramps it every epoch; as a Python float it would be a constant of a compiled
    graph (a recompile every epoch, and eager after Dynamo's recompile limit), as a buffer it
    is an input. Drop path switches on, once, when the probability first turns positive;
    until then the cells draw no masks. Call ``_init_drop_path()`` in ``__init__``.
    """

    def _init_drop_path(self) -> None:
        self.register_buffer("drop_path_prob_t", torch.zeros(()), persistent=False)
        self.drop_path_on = False

    @property
    def drop_path_prob(self) -> float:
        return float(self.drop_path_prob_t)

    @drop_path_prob.setter
    def drop_path_prob(self, p: float) -> None:
        self.drop_path_prob_t.fill_(p)
        self.drop_path_on = self.drop_path_on or p > 0

    def cell_drop_prob(self) -> float | torch.Tensor:
        """What the cells get: the buffer once drop path is on, else 0.0."""
        return self.drop_path_prob_t if self.drop_path_on else 0.0


def _check_same_channels(name: str, C_in: int, C_out: int) -> None:
    if C_in != C_out:
        raise ValueError(f"Op '{name}' keeps the channel count; got C_in={C_in}, C_out={C_out}.")


def _pool(name: str, kind: str) -> OpFactory:
    def build(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
        _check_same_channels(name, C_in, C_out)
        if kind == "max":
            return nn.MaxPool2d(3, stride=stride, padding=1)
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

    return build


def _skip(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
    if stride == 2:
        return FactorizedReduce(C_in, C_out, affine=affine)
    if C_in != C_out:  # a channel change at full resolution needs a 1x1 projection
        return ReLUConvBN(C_in, C_out, 1, 1, 0, affine=affine)
    return Identity()


OPS: dict[str, OpFactory] = {
    "none": lambda C_in, C_out, stride, affine: Zero(C_out, stride),
    "max_pool_3x3": _pool("max_pool_3x3", "max"),
    "avg_pool_3x3": _pool("avg_pool_3x3", "avg"),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda C_in, C_out, stride, affine: SepConv(C_in, C_out, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C_in, C_out, stride, affine: SepConv(C_in, C_out, 5, stride, 2, affine),
    "sep_conv_7x7": lambda C_in, C_out, stride, affine: SepConv(C_in, C_out, 7, stride, 3, affine),
    "dil_conv_3x3": lambda C_in, C_out, stride, affine: DilConv(
        C_in, C_out, 3, stride, 2, 2, affine
    ),
    "dil_conv_5x5": lambda C_in, C_out, stride, affine: DilConv(
        C_in, C_out, 5, stride, 4, 2, affine
    ),
    "conv_7x1_1x7": lambda C_in, C_out, stride, affine: nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C_in, C_in, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(C_in, C_out, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C_out, affine=affine),
    ),
    "nor_conv_1x1": lambda C_in, C_out, stride, affine: ReLUConvBN(
        C_in, C_out, 1, stride, 0, affine
    ),
    "nor_conv_3x3": lambda C_in, C_out, stride, affine: ReLUConvBN(
        C_in, C_out, 3, stride, 1, affine
    ),
}


def unknown_op_error(name: object) -> ValueError:
    return ValueError(
        f"Unknown candidate op {name!r}. Valid ops are: {', '.join(sorted(OPS))}. "
        "Check the op list of the search space config or the genotype file."
    )


def build_op(name: str, C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
    """Builds the candidate op ``name``; an unknown name raises an error listing the valid ones."""
    if name not in OPS:
        raise unknown_op_error(name)
    if stride not in (1, 2):
        raise ValueError(f"Op stride must be 1 or 2, got {stride!r}.")
    return OPS[name](C_in, C_out, stride, affine)


def build_search_op(name: str, C: int, stride: int, pool_bn: bool = True) -> nn.Module:
    """A candidate op as it sits in a search cell: non-affine BN, pools followed by BN
    (DARTS' search cells; ``pool_bn=False``: bare pools, as in DrNAS' DARTS-space code)."""
    op = build_op(name, C, C, stride, affine=False)
    if "pool" in name and pool_bn:
        op = PoolBN(op, C)
    return op


def build_search_op_bare_pools(name: str, C: int, stride: int) -> nn.Module:
    """``build_search_op`` without the BN after pools (a module-level function: MixedOp keeps
    its builder, and pickling a supernet for DDP spawn needs it importable)."""
    return build_search_op(name, C, stride, pool_bn=False)


def validate_op_names(names: list[str] | tuple[str, ...]) -> None:
    for name in names:
        if name not in OPS:
            raise unknown_op_error(name)
