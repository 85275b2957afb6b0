"""The standalone network of a DARTS genotype (the "NetworkCIFAR" evaluation network).

Liu et al., ICLR 2019: a 3C-channel stem, ``layers`` cells with reductions at 1/3 and 2/3 depth,
an auxiliary classifier after the cell at 2/3 depth (training only), and drop path on every
non-identity op, its probability set from outside (ramped linearly with epochs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from supernet.fixed_cells import build_fixed_reduction_cell
from supernet.genotypes import Genotype
from supernet.ops import (
    DropPathProb,
    Identity,
    ReLUConvBN,
    build_op,
    drop_path,
    drop_path_applies,
    preprocess_previous,
)
from supernet.spaces.base import check_sizes, reduction_layers


class ChildCell(nn.Module):
    """A cell with the genotype's two ops per node."""

    def __init__(
        self,
        pairs: Sequence[tuple[str, int]],
        concat: Sequence[int],
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = preprocess_previous(C_pp, C, reduction_prev, affine=True)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        self.indices = [inp for _, inp in pairs]
        self.concat = list(concat)
        self.multiplier = len(concat)
        self.ops = nn.ModuleList(
            build_op(op, C, C, 2 if reduction and inp < 2 else 1, affine=True) for op, inp in pairs
        )

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float | torch.Tensor
    ) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(len(self.ops) // 2):
            total = 0
            for k in (2 * i, 2 * i + 1):
                op = self.ops[k]
                h = op(states[self.indices[k]])
                if drop_path_applies(self.training, drop_prob) and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


def build_child_cell(
    genotype: Genotype, reduction: bool, C_pp: int, C_p: int, C: int, reduction_prev: bool
) -> nn.Module:
    """The genotype's normal or reduction cell; a fixed ``reduce_cell`` when it names one."""
    if reduction and genotype.fixed_reduction:
        return build_fixed_reduction_cell(
            genotype.reduce_cell, C_pp, C_p, C, reduction_prev, affine=True
        )
    pairs, concat = genotype.cell("reduce" if reduction else "normal")
    return ChildCell(pairs, concat, C_pp, C_p, C, reduction, reduction_prev)


class AuxiliaryHead(nn.Module):
    """DARTS' CIFAR auxiliary classifier, assuming an 8x8 input; other sizes pool adaptively to 2x2."""

    def __init__(self, C: int, num_classes: int, spatial: int):
        super().__init__()
        pool: nn.Module = (
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
            if spatial == 8
            else nn.AdaptiveAvgPool2d(2)
        )
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),  # its input is also the next cell's input
            pool,
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsChildNetwork(DropPathProb, nn.Module):
    """Evaluation network of a genotype. ``forward`` returns ``(logits, aux_logits | None)``."""

    def __init__(
        self,
        genotype: Genotype,
        input_shape: Sequence[int],
        num_classes: int,
        C: int = 36,
        layers: int = 20,
        auxiliary: bool = True,
        stem_multiplier: int = 3,
    ):
        super().__init__()
        check_sizes(input_shape, C, layers)
        self._init_drop_path()
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        C_pp, C_p, C_curr = C_curr, C_curr, C
        reductions = reduction_layers(layers)
        self.aux_position = 2 * layers // 3
        self.cells = nn.ModuleList()
        reduction_prev = False
        spatial = input_shape[1]
        C_aux = None
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
                spatial = (spatial + 1) // 2
            cell = build_child_cell(genotype, reduction, C_pp, C_p, C_curr, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
            if i == self.aux_position:
                C_aux, aux_spatial = C_p, spatial
        self.auxiliary = AuxiliaryHead(C_aux, num_classes, aux_spatial) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        aux_logits = None
        drop_prob = self.cell_drop_prob()
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, drop_prob)
            if i == self.aux_position and self.auxiliary is not None and self.training:
                aux_logits = self.auxiliary(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, aux_logits
