"""Hand-designed reduction cells that replace the searched one (``search_space.reduce_cell``).

GDAS (Dong & Yang, CVPR 2019, sec. 3.3 and Fig. 3) observed that searched reduction cells
are mostly parameter-free and fix a hand-designed one ("FRC") so that only the normal cell is
searched; with it GDAS reports 2.82 % CIFAR-10 error at 2.5M parameters (0.17 GPU-days),
against 2.93 % / 3.4M for searching both cells. The cell, as published:

- both inputs are preprocessed as in a DARTS cell (a ``FactorizedReduce`` for an already
  reduced previous-previous input, otherwise ReLU-Conv1x1-BN) to ``C`` channels;
- each preprocessed input feeds two stride-2 branches: a factorized convolution (ReLU, 1x3
  conv with stride (1, 2), 3x1 conv with stride (2, 1), both in 8 groups, BN, ReLU, 1x1 conv,
  BN) and a 3x3 max pool (padding 1) followed by BN;
- the output concatenates the four branches (conv(s0), conv(s1), pool(s0), pool(s1)): 4C
  channels, the DARTS multiplier.

The same cell serves the supernet (BN without affine parameters, like every search cell)
and the evaluation network (affine BN, drop path on every branch).
"""

from __future__ import annotations

import torch
from torch import nn

from supernet.ops import ReLUConvBN, drop_path, drop_path_applies, preprocess_previous

# Convolution groups of the factorized branch, as in the paper.
GDAS_GROUPS = 8


class FactorizedStrideConv(nn.Sequential):
    """ReLU, grouped 1x3 (stride 1x2) and 3x1 (stride 2x1) convolutions, BN, ReLU, 1x1, BN."""

    def __init__(self, C: int, affine: bool, groups: int = GDAS_GROUPS):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, 3), stride=(1, 2), padding=(0, 1), groups=groups, bias=False),
            nn.Conv2d(C, C, (3, 1), stride=(2, 1), padding=(1, 0), groups=groups, bias=False),
            nn.BatchNorm2d(C, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 1, bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )


class GdasReductionCell(nn.Module):
    """GDAS' fixed reduction cell; ``forward(s0, s1, drop_prob=0.0)`` returns 4C channels."""

    multiplier = 4
    reduction = True

    def __init__(self, C_pp: int, C_p: int, C: int, reduction_prev: bool, affine: bool):
        super().__init__()
        if C % GDAS_GROUPS:
            raise ValueError(
                f"The gdas_frc reduction cell convolves in {GDAS_GROUPS} groups, so its channel "
                f"count must be a multiple of {GDAS_GROUPS}; got {C} (twice the cell's input "
                f"width). Choose C (search_space.C / retrain.C) so that the reduced widths are "
                f"multiples of {GDAS_GROUPS}, e.g. C=16 or 36, or use reduce_cell=searched."
            )
        self.preprocess0 = preprocess_previous(C_pp, C, reduction_prev, affine)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=affine)
        self.conv = nn.ModuleList(FactorizedStrideConv(C, affine) for _ in range(2))
        self.pool = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), nn.BatchNorm2d(C, affine=affine))
            for _ in range(2)
        )

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float | torch.Tensor = 0.0
    ) -> torch.Tensor:
        inputs = (self.preprocess0(s0), self.preprocess1(s1))
        branches = [conv(x) for conv, x in zip(self.conv, inputs, strict=True)]
        branches += [pool(x) for pool, x in zip(self.pool, inputs, strict=True)]
        if drop_path_applies(self.training, drop_prob):
            branches = [drop_path(b, drop_prob) for b in branches]
        return torch.cat(branches, dim=1)


# ``reduce_cell`` names of the fixed cells; "searched" means the reduction cell is searched.
FIXED_REDUCTION_CELLS: dict[str, type[nn.Module]] = {"gdas_frc": GdasReductionCell}
REDUCE_CELL_CHOICES = ("searched", *FIXED_REDUCTION_CELLS)


def check_reduce_cell(name: object) -> str:
    """``name`` if it is a valid ``reduce_cell`` choice; otherwise a clear error."""
    if name not in REDUCE_CELL_CHOICES:
        raise ValueError(
            f"Unknown reduce_cell {name!r}. Valid choices are: {', '.join(REDUCE_CELL_CHOICES)} "
            "('searched' searches the reduction cell; the others fix a hand-designed one)."
        )
    return name  # type: ignore[return-value]


def build_fixed_reduction_cell(
    name: str, C_pp: int, C_p: int, C: int, reduction_prev: bool, affine: bool
) -> nn.Module:
    check_reduce_cell(name)
    if name == "searched":
        raise ValueError("build_fixed_reduction_cell needs a fixed cell name, got 'searched'.")
    return FIXED_REDUCTION_CELLS[name](C_pp, C_p, C, reduction_prev, affine)
