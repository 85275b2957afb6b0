"""The ImageNet-mobile network of a DARTS genotype ("NetworkImageNet", Liu et al., ICLR 2019).

As in the DARTS reference implementation: three stride-2 stem convolutions take a 224x224
image to 28x28 (``stem0``: Conv(3, C/2, 3, s2) BN ReLU Conv(C/2, C, 3, s2) BN; ``stem1``: ReLU
Conv(C, C, 3, s2) BN); the first cell sees ``stem0``'s 56x56 output as its first input, hence
``reduction_prev=True`` and ``C_prev_prev = C_prev = C``; cells as in the CIFAR network with
reductions at ``layers // 3`` and ``2 * layers // 3`` (28 → 14 → 7); global average pooling
(``AvgPool2d(7)`` at 224, written adaptively) and a linear classifier. The auxiliary head sits
after the cell at 2/3 depth (7x7 input): ReLU, AvgPool2d(5, stride 2, no padding,
count_include_pad=False), Conv 1x1 to 128, BN, ReLU, Conv 2x2 to 768, ReLU, Linear. The
reference omits the BatchNorm after the 768-channel conv (a typo kept "for consistency with
the experiments in the paper"), and so do we. DARTS_V2 at C=48, 14 cells: 4.7M parameters and
574M multiply-adds in the paper (tests/supernet/test_imagenet_child.py checks our counts).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from supernet.genotypes import Genotype
from supernet.ops import DropPathProb
from supernet.spaces.base import check_sizes, reduction_layers
from supernet.spaces.darts_child import build_child_cell


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS' ImageNet auxiliary classifier for a 7x7 input (no BN after the 768-channel conv)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),  # its input is also the next cell's input
            nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsImageNetNetwork(DropPathProb, nn.Module):
    """ImageNet evaluation network of a genotype; ``forward`` returns ``(logits, aux | None)``.

    Args:
        genotype: A DARTS-space genotype.
        input_shape: ``[C, H, W]``; 224x224 in the papers (at least 32x32: five stride-2 stages).
        num_classes: 1000 for ImageNet.
        C: Initial channels (48 in DARTS' mobile setting).
        layers: Cells (14 in DARTS' mobile setting).
        auxiliary: Build the auxiliary head (used in training only).
    """

    def __init__(
        self,
        genotype: Genotype,
        input_shape: Sequence[int],
        num_classes: int,
        C: int = 48,
        layers: int = 14,
        auxiliary: bool = True,
    ):
        super().__init__()
        check_sizes(input_shape, C, layers, extra_reductions=3)
        self._init_drop_path()
        self.stem0 = nn.Sequential(
            nn.Conv2d(input_shape[0], C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),  # stem0's output is also the first cell's s0
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        C_pp, C_p, C_curr = C, C, C
        reductions = reduction_layers(layers)
        self.aux_position = 2 * layers // 3
        self.cells = nn.ModuleList()
        reduction_prev = True
        C_aux = None
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            cell = build_child_cell(genotype, reduction, C_pp, C_p, C_curr, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
            if i == self.aux_position:
                C_aux = C_p
        self.auxiliary = AuxiliaryHeadImageNet(C_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)  # = AvgPool2d(7) on the 7x7 map at 224
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        aux_logits = None
        drop_prob = self.cell_drop_prob()
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, drop_prob)
            if i == self.aux_position and self.auxiliary is not None and self.training:
                aux_logits = self.auxiliary(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, aux_logits
