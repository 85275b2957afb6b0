"""Weight-entangled layers: ``Linear``, ``Conv2d``, ``BatchNorm2d`` and ``LayerNorm`` whose sizes
may be value choices.

The supernet holds one layer at the largest value of each size; a smaller choice uses the
first channels or features (and a kernel's centre), the mechanism of the MobileNet superkernel
(Stamoulis et al., Single-Path NAS, 2019) and of AutoFormer (Chen et al., ICCV 2021). Under
mixing weights the layer runs once with the α-weighted superposition of its masked weights
(TangleNAS: Sukthanker et al., 2024): ``W_eff = Σ_j w_j · W ⊙ M_j`` over the joint choices j of
the value choices it depends on. Tensors keep the largest width; channels beyond a choice's
width are exactly zero, so at a one-hot choice the output equals the plain layer of that size
with the sliced weights (``fixed``), padded with zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from supernet.choices.base import (
    Assignment,
    ChoiceModule,
    all_values,
    fixed_values,
    joint_mixture,
    require_sizes,
)
from supernet.choices.decision import ChoiceError
from supernet.choices.values import largest


def prefix(size: int, length: int, like: torch.Tensor) -> torch.Tensor:
    """``[length]`` mask of the first ``size`` entries."""
    return (torch.arange(length, device=like.device) < size).to(like.dtype)


def centre(size: int, length: int, like: torch.Tensor) -> torch.Tensor:
    """``[length]`` mask of the ``size`` central entries (a smaller kernel inside a larger)."""
    start = (length - size) // 2
    idx = torch.arange(length, device=like.device)
    return ((idx >= start) & (idx < start + size)).to(like.dtype)


def superpose(
    values: dict[str, Any], like: torch.Tensor, mask_of: Callable[[dict[str, Any]], torch.Tensor]
) -> torch.Tensor:
    """``Σ_j w_j · mask_of(values at j)`` over the joint choices j."""
    total = None
    for at, coef in joint_mixture(values):
        m = mask_of(at)
        if coef is not None:
            m = m * coef
        total = m if total is None else total + m
    return total


class _Entangled(ChoiceModule):
    """Keeps the constructor's arguments, value choices included."""

    def __init__(self, **values: Any):
        super().__init__()
        self._values = values
        # Refuse bad sizes now: the weights are made at the largest sizes, which a float or a
        # size below 1 would fail with an unclear error (``discover`` checks again).
        self.check()

    def value_args(self) -> dict[str, Any]:
        return dict(self._values)

    def _check_width(self, x: torch.Tensor, dim: int, name: str) -> None:
        expected = largest(self._values[name])
        if x.shape[dim] != expected:
            raise ChoiceError(
                f"{type(self).__name__}: the input has {x.shape[dim]} features on dim {dim}; "
                f"{name}={self._values[name]!r} needs its largest value, {expected} (a layer "
                "before it must give the largest width too)."
            )


class Linear(_Entangled):
    """``nn.Linear`` whose ``in_features`` / ``out_features`` may be value choices."""

    def __init__(self, in_features: Any, out_features: Any, bias: bool = True):
        super().__init__(in_features=in_features, out_features=out_features)
        self.use_bias = bias
        self.weight = nn.Parameter(torch.empty(largest(out_features), largest(in_features)))
        self.bias = nn.Parameter(torch.empty(largest(out_features))) if bias else None
        ref = nn.Linear(largest(in_features), largest(out_features), bias=bias)
        with torch.no_grad():
            self.weight.copy_(ref.weight)
            if bias:
                self.bias.copy_(ref.bias)

    def check(self) -> None:
        require_sizes("Linear", self._values, ("in_features", "out_features"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_width(x, -1, "in_features")
        O, I = self.weight.shape  # noqa: E741
        w = self.weight * superpose(
            self._values,
            self.weight,
            lambda v: (
                prefix(v["out_features"], O, self.weight)[:, None]
                * prefix(v["in_features"], I, self.weight)[None, :]
            ),
        )
        b = None
        if self.bias is not None:
            outs = {"out_features": self._values["out_features"]}
            b = self.bias * superpose(
                outs, self.bias, lambda v: prefix(v["out_features"], O, self.bias)
            )
        return F.linear(x, w, b)

    def fixed(self, assignment: Assignment, inherit: bool) -> nn.Linear:
        v = fixed_values(self._values, assignment)
        out = nn.Linear(v["in_features"], v["out_features"], bias=self.use_bias)
        if inherit:
            with torch.no_grad():
                out.weight.copy_(self.weight[: v["out_features"], : v["in_features"]])
                if self.bias is not None:
                    out.bias.copy_(self.bias[: v["out_features"]])
        return out.to(self.weight.device)


class Conv2d(_Entangled):
    """``nn.Conv2d`` whose channels and (odd) kernel size may be value choices; padding is
    ``kernel_size // 2`` (the output keeps its size at stride 1, for every kernel).
    ``groups``: 1, or ``"depthwise"`` (groups = channels; ``in_channels`` and
    ``out_channels`` must then be the same value)."""

    def __init__(
        self,
        in_channels: Any,
        out_channels: Any,
        kernel_size: Any,
        stride: int = 1,
        groups: int | str = 1,
        bias: bool = True,
    ):
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size
        )
        if groups not in (1, "depthwise"):
            raise ChoiceError(
                f"Conv2d: groups={groups!r} is not supported; valid choices are: 1, 'depthwise'."
            )
        if groups == "depthwise" and not (
            in_channels is out_channels
            or (type(in_channels) is int and in_channels == out_channels)
        ):
            raise ChoiceError(
                "Conv2d(groups='depthwise') needs in_channels and out_channels to be the same "
                f"value (object), got {in_channels!r} and {out_channels!r}."
            )
        self.stride, self.depthwise, self.use_bias = stride, groups == "depthwise", bias
        C_out, C_in, K = largest(out_channels), largest(in_channels), largest(kernel_size)
        ref = nn.Conv2d(
            C_in, C_out, K, stride, K // 2, groups=C_in if self.depthwise else 1, bias=bias
        )
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone()) if bias else None

    def check(self) -> None:
        require_sizes("Conv2d", self._values, ("in_channels", "out_channels", "kernel_size"))
        K = largest(self._values["kernel_size"])
        for v in all_values(self._values):
            if v["kernel_size"] % 2 == 0:
                raise ChoiceError(
                    f"Conv2d: kernel_size={self._values['kernel_size']!r} takes the even value "
                    f"{v['kernel_size']}; kernels must be odd (a smaller kernel is the centre of "
                    f"the largest, {K})."
                )

    def _mask(self, v: dict[str, Any]) -> torch.Tensor:
        n_out, n_in, K, _ = self.weight.shape
        m_out = prefix(v["out_channels"], n_out, self.weight)
        m_in = (
            torch.ones(1, dtype=self.weight.dtype, device=self.weight.device)
            if self.depthwise
            else prefix(v["in_channels"], n_in, self.weight)
        )
        m_k = centre(v["kernel_size"], K, self.weight)
        return m_out[:, None, None, None] * m_in[None, :, None, None] * m_k[:, None] * m_k[None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_width(x, 1, "in_channels")
        w = self.weight * superpose(self._values, self.weight, self._mask)
        b = None
        if self.bias is not None:
            outs = {"out_channels": self._values["out_channels"]}
            b = self.bias * superpose(
                outs, self.bias, lambda v: prefix(v["out_channels"], len(self.bias), self.bias)
            )
        K = self.weight.shape[-1]
        groups = self.weight.shape[0] if self.depthwise else 1
        return F.conv2d(x, w, b, self.stride, K // 2, 1, groups)

    def fixed(self, assignment: Assignment, inherit: bool) -> nn.Conv2d:
        v = fixed_values(self._values, assignment)
        c_in, c_out, k = v["in_channels"], v["out_channels"], v["kernel_size"]
        groups = c_in if self.depthwise else 1
        out = nn.Conv2d(c_in, c_out, k, self.stride, k // 2, groups=groups, bias=self.use_bias)
        if inherit:
            K = self.weight.shape[-1]
            s = (K - k) // 2
            w = self.weight[:c_out, : (1 if self.depthwise else c_in), s : s + k, s : s + k]
            with torch.no_grad():
                out.weight.copy_(w)
                if self.bias is not None:
                    out.bias.copy_(self.bias[:c_out])
        return out.to(self.weight.device)


class BatchNorm2d(_Entangled):
    """``nn.BatchNorm2d`` whose ``num_features`` may be a value choice: per-channel
    normalization of the largest width, channels beyond the choice set to zero."""

    def __init__(
        self,
        num_features: Any,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__(num_features=num_features)
        self.bn = nn.BatchNorm2d(largest(num_features), eps, momentum, affine, track_running_stats)

    def check(self) -> None:
        require_sizes("BatchNorm2d", self._values, ("num_features",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_width(x, 1, "num_features")
        y = self.bn(x)
        C = y.shape[1]
        m = superpose(self._values, y, lambda v: prefix(v["num_features"], C, y))
        return y * m[None, :, None, None]

    def fixed(self, assignment: Assignment, inherit: bool) -> nn.BatchNorm2d:
        n = fixed_values(self._values, assignment)["num_features"]
        bn = self.bn
        out = nn.BatchNorm2d(n, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        if inherit:
            with torch.no_grad():
                if bn.affine:
                    out.weight.copy_(bn.weight[:n])
                    out.bias.copy_(bn.bias[:n])
                if bn.track_running_stats:
                    out.running_mean.copy_(bn.running_mean[:n])
                    out.running_var.copy_(bn.running_var[:n])
                    out.num_batches_tracked.copy_(bn.num_batches_tracked)
        return out.to(bn.weight.device if bn.affine else "cpu")


class LayerNorm(_Entangled):
    """``nn.LayerNorm`` over the last dimension, whose size may be a value choice: a choice
    normalizes its first features (their own mean and variance), the rest are zero."""

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__(normalized_shape=normalized_shape)
        self.eps, self.affine = eps, elementwise_affine
        n = largest(normalized_shape)
        self.weight = nn.Parameter(torch.ones(n)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(n)) if elementwise_affine else None

    def check(self) -> None:
        require_sizes("LayerNorm", self._values, ("normalized_shape",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_width(x, -1, "normalized_shape")
        N = x.shape[-1]
        total = None
        for v, coef in joint_mixture(self._values):
            n = v["normalized_shape"]
            w = None if self.weight is None else self.weight[:n]
            b = None if self.bias is None else self.bias[:n]
            y = F.layer_norm(x[..., :n], (n,), w, b, self.eps)
            if n < N:
                y = F.pad(y, (0, N - n))
            if coef is not None:
                y = y * coef
            total = y if total is None else total + y
        return total

    def fixed(self, assignment: Assignment, inherit: bool) -> nn.LayerNorm:
        n = fixed_values(self._values, assignment)["normalized_shape"]
        out = nn.LayerNorm(n, self.eps, self.affine)
        if inherit and self.weight is not None:
            with torch.no_grad():
                out.weight.copy_(self.weight[:n])
                out.bias.copy_(self.bias[:n])
        return out if self.weight is None else out.to(self.weight.device)
