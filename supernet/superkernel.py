"""MBConv blocks and weight-sharing superkernels for the MobileNet-style space (``mbconv``).

**MBConv** (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR
2018, as ProxylessNAS and FBNet search it): 1x1 expand to ``e·C_in`` + BN + ReLU6, depthwise
k×k (stride s) + BN + ReLU6, optional squeeze-excitation, 1x1 project + BN (linear bottleneck).
The residual is added by the layer that holds the block (``supernet.spaces.mbconv``).

**Superkernel** (Stamoulis et al., "Single-Path NAS", 2019; Cai et al., "Once-for-All", ICLR
2020): the candidates (k, e) of one layer share one set of weights. The 7×7 depthwise kernel's
centred 5×5 and 3×3 sub-kernels are the k=5 and k=3 candidates; the expansion-6 1x1 convs'
leading ``3·C_in`` hidden channels are the e=3 candidate's (expand: the first rows; depthwise,
BN, SE: the first channels; project: the first input columns).

What is exact and what is a relaxation:

- The depthwise conv is linear in its kernel, so ``Σ_k w_k · dwconv(h, W_k) =
  dwconv(h, Σ_k w_k · pad(W_k))`` (``merge_kernels`` / ``superkernel_depthwise``): one
  convolution with the merged kernel equals the weighted sum of the separate convolutions with
  the sub-kernels, values and gradients (tested in fp64).
- BN and ReLU6 follow the depthwise conv and are not linear, so a mix of whole MBConv blocks
  (``superkernel=false``: ``Σ w_(k,e) · MBConv_(k,e)(x)``, each candidate with its own weights,
  ProxylessNAS' / FBNet's mixed op) is not one block. ``SuperMBConv`` implements Single-Path
  NAS' design instead: the mix happens at the kernel level inside one block with shared BN.
  With ``s = Σ w_(k,e)``:

      K   = Σ_k (Σ_e w_(k,e) / s) · pad(W_k)               (merged depthwise kernel)
      m_c = Σ_(k,e): c < e·C_in  w_(k,e) / s               (expansion gate of hidden channel c)
      out = s · BN3(project(m ⊙ SE(ReLU6(BN2(dwconv(ReLU6(BN1(expand(x))), K))))))

  For a one-hot weight at (k, e) this is exactly candidate (k, e) (BN normalises each channel
  on its own, and the gated-off channels are zero into SE and project), so it equals the
  separate-candidate block whose weights are the shared slices (tested). For soft weights it is
  a relaxation, not the weighted sum of the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def centre_crop(weight: torch.Tensor, k: int) -> torch.Tensor:
    """The centred ``k×k`` sub-kernel of ``weight`` ``[C, 1, K, K]`` (K, k odd)."""
    K = weight.shape[-1]
    lo = (K - k) // 2
    return weight[..., lo : lo + k, lo : lo + k]


def merge_kernels(
    weight: torch.Tensor, mix: torch.Tensor, kernel_sizes: Sequence[int]
) -> torch.Tensor:
    """``Σ_i mix_i · pad(centre_crop(weight, k_i))``: one kernel of ``weight``'s size.

    Args:
        weight: the shared kernel, ``[C, 1, K, K]``.
        mix: ``[len(kernel_sizes)]`` weights, or ``[C, len(kernel_sizes)]`` per channel.
        kernel_sizes: odd sizes ≤ K.
    """
    K = weight.shape[-1]
    # Centred masks, one per size: pad(crop(W, k)) = W ⊙ mask_k.
    masks = weight.new_zeros(len(kernel_sizes), K, K)
    for i, k in enumerate(kernel_sizes):
        lo = (K - k) // 2
        masks[i, lo : lo + k, lo : lo + k] = 1.0
    if mix.dim() == 1:
        coeff = torch.einsum("i,ihw->hw", mix, masks)[None, None]  # [1, 1, K, K]
    else:
        coeff = torch.einsum("ci,ihw->chw", mix, masks)[:, None]  # [C, 1, K, K]
    return weight * coeff


def superkernel_depthwise(
    x: torch.Tensor,
    weight: torch.Tensor,
    mix: torch.Tensor,
    kernel_sizes: Sequence[int],
    stride: int = 1,
) -> torch.Tensor:
    """One depthwise conv with the merged kernel: equals ``Σ_i mix_i · dwconv(x, crop_k_i(W))``
    (each with padding k_i // 2) by linearity."""
    K = max(kernel_sizes)
    w = centre_crop(weight, K) if K < weight.shape[-1] else weight
    merged = merge_kernels(w, mix, kernel_sizes)
    return F.conv2d(x, merged, stride=stride, padding=K // 2, groups=x.shape[1])


def separate_depthwise(
    x: torch.Tensor,
    weight: torch.Tensor,
    mix: torch.Tensor,
    kernel_sizes: Sequence[int],
    stride: int = 1,
) -> torch.Tensor:
    """The explicit weighted sum of one depthwise conv per kernel size (the reference)."""
    out = 0
    for i, k in enumerate(kernel_sizes):
        y = F.conv2d(x, centre_crop(weight, k), stride=stride, padding=k // 2, groups=x.shape[1])
        w = mix[i] if mix.dim() == 1 else mix[:, i].reshape(1, -1, 1, 1)
        out = out + w * y
    return out


def se_channels(C_in: int) -> int:
    """Squeeze-excitation bottleneck: a quarter of the block's input channels (MnasNet's 0.25
    ratio), the same for every expansion so the candidates can share it."""
    return max(1, C_in // 4)


class SqueezeExcite(nn.Module):
    """Global pool → 1x1 reduce → ReLU → 1x1 expand → sigmoid gate (Hu et al., CVPR 2018)."""

    def __init__(self, C: int, mid: int):
        super().__init__()
        self.reduce = nn.Conv2d(C, mid, 1)
        self.expand = nn.Conv2d(mid, C, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(s))))


def _bn(C: int, affine: bool, track: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(C, affine=affine, track_running_stats=track)


class MBConv(nn.Module):
    """One inverted-residual block without its residual (the holding layer adds it).

    ``expansion=1`` has no expand conv (MobileNetV2's first block, ProxylessNAS' ``first_block``).
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        expansion: int,
        stride: int = 1,
        se: bool = False,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__()
        hidden = C_in * expansion
        self.kernel_size, self.expansion = kernel_size, expansion
        t = track_running_stats
        self.expand = (
            None
            if expansion == 1
            else nn.Sequential(
                nn.Conv2d(C_in, hidden, 1, bias=False), _bn(hidden, affine, t), nn.ReLU6()
            )
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, kernel_size, stride, kernel_size // 2, groups=hidden, bias=False),
            _bn(hidden, affine, t),
            nn.ReLU6(),
        )  # fmt: skip
        self.se = SqueezeExcite(hidden, se_channels(C_in)) if se else None
        self.project = nn.Sequential(nn.Conv2d(hidden, C_out, 1, bias=False), _bn(C_out, affine, t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.expand is None else self.expand(x)
        h = self.depthwise(h)
        if self.se is not None:
            h = self.se(h)
        return self.project(h)


class SuperMBConv(nn.Module):
    """All (k, e) candidates of one layer in one block of shared weights (module docstring).

    Candidates are indexed kernel-major: ``(k_0, e_0), (k_0, e_1), ..., (k_1, e_0), ...``.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        stride: int,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        expansions: Sequence[int] = (3, 6),
        se: bool = False,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__()
        self.C_in, self.stride = C_in, stride
        self.kernel_sizes, self.expansions = tuple(kernel_sizes), tuple(sorted(expansions))
        if list(expansions) != list(self.expansions) or list(kernel_sizes) != sorted(kernel_sizes):
            raise ValueError(
                f"SuperMBConv needs ascending kernel sizes and expansions, got {list(kernel_sizes)} "
                f"and {list(expansions)}."
            )
        K, hidden = max(kernel_sizes), C_in * max(expansions)
        t = track_running_stats
        self.expand_conv = nn.Conv2d(C_in, hidden, 1, bias=False)
        self.bn1 = _bn(hidden, affine, t)
        self.dw_weight = nn.Parameter(torch.empty(hidden, 1, K, K))
        nn.init.kaiming_uniform_(self.dw_weight, a=5**0.5)  # nn.Conv2d's default
        self.bn2 = _bn(hidden, affine, t)
        self.se = SqueezeExcite(hidden, se_channels(C_in)) if se else None
        self.project_conv = nn.Conv2d(hidden, C_out, 1, bias=False)
        self.bn3 = _bn(C_out, affine, t)

    @property
    def candidates(self) -> list[tuple[int, int]]:
        return [(k, e) for k in self.kernel_sizes for e in self.expansions]

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, used: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Args:
        x: ``[N, C_in, H, W]``.
        weights: ``[len(candidates)]`` mixing weights (zero for unused candidates).
        used: candidate indices that may be non-zero (``None`` = all); only the widest
            expansion and largest kernel among them are computed.
        """
        n_e = len(self.expansions)
        cands = self.candidates
        used = range(len(cands)) if used is None else list(used)
        k_max = max(cands[i][0] for i in used)
        e_max = max(cands[i][1] for i in used)
        ks = [k for k in self.kernel_sizes if k <= k_max]
        es = [e for e in self.expansions if e <= e_max]
        hidden = self.C_in * e_max
        w = weights.reshape(len(self.kernel_sizes), n_e)[: len(ks), : len(es)]
        s = w.sum()
        # All-zero weights (e.g. a one-hot ``zero`` with every candidate computed): output 0.
        denom = torch.where(s == 0, torch.ones_like(s), s)
        kernel_mix = w.sum(1) / denom  # [len(ks)]
        # Gate of hidden channel c: the weight of the candidates whose expansion covers c.
        cover = w.sum(0).flip(0).cumsum(0).flip(0) / denom  # [len(es)]: Σ over e' >= e
        widths = [self.C_in * e for e in es]
        sizes = [widths[0]] + [b - a for a, b in zip(widths, widths[1:])]
        gate = torch.repeat_interleave(cover, torch.tensor(sizes, device=x.device))

        h = F.conv2d(x, self.expand_conv.weight[:hidden])
        h = F.relu6(_bn_slice(self.bn1, h, hidden))
        h = superkernel_depthwise(h, self.dw_weight[:hidden], kernel_mix, ks, self.stride)
        h = F.relu6(_bn_slice(self.bn2, h, hidden))
        h = h * gate.reshape(1, -1, 1, 1)
        if self.se is not None:
            se = self.se
            pooled = F.adaptive_avg_pool2d(h, 1)
            mid = F.relu(F.conv2d(pooled, se.reduce.weight[:, :hidden], se.reduce.bias))
            h = h * torch.sigmoid(F.conv2d(mid, se.expand.weight[:hidden], se.expand.bias[:hidden]))
        out = self.bn3(F.conv2d(h, self.project_conv.weight[:, :hidden]))
        return s * out

    @torch.no_grad()
    def copy_into(self, block: MBConv) -> MBConv:
        """Copies the shared slices of candidate ``(block.kernel_size, block.expansion)`` into a
        separate ``MBConv`` (for the equivalence test and for inheriting weights)."""
        k, hidden = block.kernel_size, self.C_in * block.expansion

        def bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, n: int) -> None:
            for name in ("weight", "bias", "running_mean", "running_var"):
                a, b = getattr(dst, name), getattr(src, name)
                if a is not None and b is not None:
                    a.copy_(b[:n])

        block.expand[0].weight.copy_(self.expand_conv.weight[:hidden])
        bn(block.expand[1], self.bn1, hidden)
        block.depthwise[0].weight.copy_(centre_crop(self.dw_weight[:hidden], k))
        bn(block.depthwise[1], self.bn2, hidden)
        if self.se is not None and block.se is not None:
            block.se.reduce.weight.copy_(self.se.reduce.weight[:, :hidden])
            block.se.reduce.bias.copy_(self.se.reduce.bias)
            block.se.expand.weight.copy_(self.se.expand.weight[:hidden])
            block.se.expand.bias.copy_(self.se.expand.bias[:hidden])
        block.project[0].weight.copy_(self.project_conv.weight[:, :hidden])
        bn(block.project[1], self.bn3, self.bn3.num_features)
        return block


def _bn_slice(bn: nn.BatchNorm2d, x: torch.Tensor, n: int) -> torch.Tensor:
    """``bn`` on the first ``n`` channels (the active width), as ``bn(x)`` would for them."""
    if n == bn.num_features:
        return bn(x)
    track = bn.training and bn.track_running_stats
    if track and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    momentum = 0.0 if bn.momentum is None else bn.momentum
    use_batch = bn.training or bn.running_mean is None
    return F.batch_norm(
        x,
        None if bn.running_mean is None else bn.running_mean[:n],
        None if bn.running_var is None else bn.running_var[:n],
        None if bn.weight is None else bn.weight[:n],
        None if bn.bias is None else bn.bias[:n],
        use_batch,
        momentum,
        bn.eps,
    )
