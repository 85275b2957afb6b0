"""A MobileNet-style chain of MBConv layers (ProxylessNAS: Cai, Zhu, Han, "ProxylessNAS: Direct
Neural Architecture Search on Target Task and Hardware", ICLR 2019; FBNet: Wu et al., CVPR 2019).

Each searchable layer is one α row ("edge" ``(i, i + 1)`` of the chain, in network order) over
7 ops in ProxylessNAS' order: ``k3_e3, k3_e6, k5_e3, k5_e6, k7_e3, k7_e6`` (depthwise kernel
size × expansion of an MBConv block, ``supernet.superkernel``) and ``zero``. As in ProxylessNAS
a layer that keeps its shape has a residual ``x + block(x)`` and ``zero`` makes it the identity;
the first layer of a stage (stride 2 or a channel change) has no residual and cannot be skipped.
There the ``zero`` column is inert: its weight multiplies nothing, and a sampled path that
names only ``zero`` on such a layer runs the layer's first candidate (``k3_e3``), which is also
what the selection rule (``argmax_per_layer``) picks for a one-hot α at ``zero`` there.

Layouts (widths scale by ``width_mult · C / 16``; C = the first block's width, 16):

- ``imagenet_mobile`` (ProxylessNAS' mobile space, 224×224; mit-han-lab/proxylessnas
  ``SuperProxylessNASNets``): 3x3 conv stem, 32 channels, stride 2; a fixed MBConv (k3, e1)
  to 16; stages of widths 24/40/80/96/192/320, strides 2/2/2/1/2/1, ``layers`` searchable
  layers each (the published 4) but the 320 stage, which has 1; a 1x1 conv to 1280 ("feature
  mix"); pooling; classifier. Widths round to multiples of 8 (``make_divisible``).
- ``cifar`` (ours, 32×32): stride-1 stem of 32, the same fixed block to 16, the first four
  stages (24/40/80/96) with strides 1/2/2/1 (8×8 at the end), ``layers`` per stage, no feature
  mix; widths round to integers (tiny test sizes stay tiny).

The supernet's layers mix their candidates by the given weights, with ``superkernel=true``
through ``SuperMBConv`` (one block of shared weights, kernel-level mix, Single-Path NAS) or
with ``superkernel=false`` as separate blocks (``Σ w · MBConv``, ProxylessNAS' mixed edge).
Search BNs use batch statistics by default (``track_running_stats=false``), as in NB201.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from supernet.genotypes import (
    MBCONV_EXPANSIONS,
    MBCONV_KERNEL_SIZES,
    MBCONV_OPS,
    MBCONV_ZERO,
    GenotypeError,
    KeptEdge,
    MBConvGenotype,
    parse_mbconv_op,
)
from supernet.mixed import disable_running_stats
from supernet.ops import Zero
from supernet.spaces.base import (
    CIFAR_NETWORK_MAX_SIDE,
    SearchSpace,
    check_choice,
    check_input_shape,
)
from supernet.spaces.shapes import OpShape, Rows, empty_rows, run_hooked
from supernet.superkernel import MBConv, SuperMBConv

# (width, stride, searchable layers or None = ``layers``) per stage; stem and first block.
LAYOUTS = {
    "imagenet_mobile": {
        "stem": (32, 2),
        "first": 16,
        "stages": [(24, 2, None), (40, 2, None), (80, 2, None), (96, 1, None), (192, 2, None),
                   (320, 1, 1)],
        "feature_mix": 1280,
        "divisor": 8,
    },
    "cifar": {
        "stem": (32, 1),
        "first": 16,
        "stages": [(24, 1, None), (40, 2, None), (80, 2, None), (96, 1, None)],
        "feature_mix": None,
        "divisor": 1,
    },
}  # fmt: skip


def make_divisible(v: float, divisor: int) -> int:
    """MobileNetV2's rounding: nearest multiple of ``divisor``, never below 90% of ``v``."""
    if divisor == 1:
        return max(1, round(v))
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def layer_plan(
    layout: str, C: int, layers: int, width_mult: float, owner: str = "search_space"
) -> dict:
    """Widths and strides of a layout: ``{"stem": (C, s), "first": C, "layers": [(C_in,
    C_out, stride), ...] (searchable), "feature_mix": C | None}``. ``owner``: the config node
    whose ``C`` this is (``retrain`` for a widened child)."""
    check_choice("layout", layout, tuple(LAYOUTS))
    for key, value in ((f"{owner}.C", C), ("search_space.layers", layers)):
        if value < 1:
            raise ValueError(f"{key}={value}: mbconv needs at least 1.")
    if width_mult <= 0:
        raise ValueError(f"search_space.width_mult={width_mult}: mbconv needs width_mult > 0.")
    spec = LAYOUTS[layout]
    scale = width_mult * C / 16

    def width(base: int) -> int:
        return make_divisible(base * scale, spec["divisor"])

    plan_layers, c_prev = [], width(spec["first"])
    for base, stride, n in spec["stages"]:
        c = width(base)
        for i in range(layers if n is None else n):
            plan_layers.append((c_prev, c, stride if i == 0 else 1))
            c_prev = c
    mix = spec["feature_mix"]
    # ProxylessNAS keeps the 1280 feature mix at width_mult <= 1 and widens it above.
    mix = None if mix is None else (width(mix) if scale > 1 else mix)
    return {
        "stem": (width(spec["stem"][0]), spec["stem"][1]),
        "first": width(spec["first"]),
        "layers": plan_layers,
        "feature_mix": mix,
    }


def skippable(C_in: int, C_out: int, stride: int) -> bool:
    return stride == 1 and C_in == C_out


class _Skeleton(nn.Module):
    """Stem, fixed first block, the layers, feature mix, pooling, classifier."""

    def _build(self, plan: dict, input_shape: Sequence[int], num_classes: int, make_layer):
        c_stem, s = plan["stem"]
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], c_stem, 3, s, 1, bias=False),
            nn.BatchNorm2d(c_stem),
            nn.ReLU6(),
        )
        self.first = MBConv(c_stem, plan["first"], 3, 1)
        self.layers = nn.ModuleList(make_layer(i, *spec) for i, spec in enumerate(plan["layers"]))
        c_last = plan["layers"][-1][1]
        mix = plan["feature_mix"]
        self.feature_mix = (
            None
            if mix is None
            else nn.Sequential(
                nn.Conv2d(c_last, mix, 1, bias=False), nn.BatchNorm2d(mix), nn.ReLU6()
            )
        )
        self.classifier = nn.Linear(mix or c_last, num_classes)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        if self.feature_mix is not None:
            h = self.feature_mix(h)
        return self.classifier(h.mean((2, 3)))


class MBConvSearchLayer(nn.Module):
    """One searchable layer: its candidates mixed by one α row (module docstring)."""

    def __init__(self, C_in: int, C_out: int, stride: int, se: bool, superkernel: bool):
        super().__init__()
        self.skippable = skippable(C_in, C_out, stride)
        self.superkernel = superkernel
        self.zero = MBCONV_OPS.index(MBCONV_ZERO)
        self.n_cand = len(MBCONV_OPS) - 1  # the (k, e) candidates, zero last
        if superkernel:
            self.block = SuperMBConv(
                C_in, C_out, stride, MBCONV_KERNEL_SIZES, MBCONV_EXPANSIONS, se=se
            )
        else:
            self.candidates = nn.ModuleList(
                MBConv(C_in, C_out, *parse_mbconv_op(op), stride, se=se)
                for op in MBCONV_OPS[: self.n_cand]
            )

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, active: Sequence[int] | None = None
    ) -> torch.Tensor:
        """``w``: this layer's ``[7]`` weights; ``active``: op indices to compute (None = all)."""
        used = list(range(self.n_cand)) if active is None else sorted(
            {int(i) for i in active if int(i) != self.zero}
        )  # fmt: skip
        wc = w[: self.n_cand]
        if not used:
            if self.skippable:
                return x  # zero: the identity (residual only)
            # A layer that cannot be skipped runs its first candidate in zero's place.
            used = [0]
            wc = torch.cat([w[self.zero : self.zero + 1], torch.zeros_like(wc[1:])])
        elif active is not None:
            mask = torch.zeros_like(wc)
            mask[used] = 1.0
            wc = wc * mask
        if self.superkernel:
            y = self.block(x, wc, used)
        else:
            y = sum(wc[i] * self.candidates[i](x) for i in used)
        return x + y if self.skippable else y


class MBConvSupernet(_Skeleton):
    """The mbconv search network; ``forward(x, weights, active, edge_weights)`` as the other
    spaces', the one cell type is ``"layers"`` (``[layers, 7]``)."""

    def __init__(
        self,
        plan: dict,
        input_shape: Sequence[int],
        num_classes: int,
        se: bool,
        superkernel: bool,
        track_running_stats: bool,
    ):
        super().__init__()

        def make_layer(i: int, C_in: int, C_out: int, stride: int) -> nn.Module:
            layer = MBConvSearchLayer(C_in, C_out, stride, se, superkernel)
            return layer if track_running_stats else disable_running_stats(layer)

        self._build(plan, input_shape, num_classes, make_layer)

    def forward(
        self,
        x: torch.Tensor,
        weights: dict[str, torch.Tensor],
        active: dict[str, Sequence[Sequence[int] | None]] | None = None,
        edge_weights: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        w = weights["layers"]
        if edge_weights is not None:
            w = w * edge_weights["layers"][:, None]
        act = None if active is None else active["layers"]
        h = self.first(self.stem(x))
        for i, layer in enumerate(self.layers):
            h = layer(h, w[i], None if act is None else act[i])
        return self._head(h)


class MBConvChildLayer(nn.Module):
    """A fixed layer: one MBConv (plus the residual where the shape is kept) or the identity."""

    def __init__(self, op: str, C_in: int, C_out: int, stride: int, se: bool):
        super().__init__()
        choice = parse_mbconv_op(op)
        self.residual = skippable(C_in, C_out, stride)
        self.block = None if choice is None else MBConv(C_in, C_out, *choice, stride, se=se)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.block is None:
            return x
        y = self.block(x)
        return x + y if self.residual else y


class MBConvChildNetwork(_Skeleton):
    """The network of one genotype; ``forward`` returns ``(logits, None)`` (no auxiliary head;
    ``drop_path_prob`` is accepted and unused)."""

    def __init__(
        self,
        genotype: MBConvGenotype,
        plan: dict,
        input_shape: Sequence[int],
        num_classes: int,
        se: bool = False,
    ):
        super().__init__()
        self.drop_path_prob = 0.0
        self.auxiliary = None
        self._build(
            plan,
            input_shape,
            num_classes,
            lambda i, C_in, C_out, s: MBConvChildLayer(genotype.layers[i], C_in, C_out, s, se),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        h = self.first(self.stem(x))
        for layer in self.layers:
            h = layer(h)
        return self._head(h), None


class MBConvSpace(SearchSpace):
    """The mbconv space: 7 ops per layer, one α row per searchable layer (``"layers"``)."""

    name = "mbconv"
    cell_types = ("layers",)
    default_selection = "argmax_per_layer"
    genotype_type = MBConvGenotype
    child_op_pattern = re.compile(r"^layers\.\d+\.block(\.|$)")

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        ops: Sequence[str] = MBCONV_OPS,
        C: int = 16,
        layers: int = 3,
        layout: str = "cifar",
        width_mult: float = 1.0,
        se: bool = False,
        superkernel: bool = True,
        track_running_stats: bool = False,
        reduce_cell: str = "searched",
    ):
        if tuple(ops) != MBCONV_OPS:
            raise ValueError(
                f"search_space.ops={list(ops)} does not fit mbconv, whose per-layer choices are "
                f"fixed: {list(MBCONV_OPS)}."
            )
        if reduce_cell != "searched":
            raise ValueError(
                f"search_space.reduce_cell={reduce_cell!r} does not apply to mbconv (no cells); "
                "the only valid choice is 'searched'."
            )
        check_input_shape(input_shape)
        self.ops = MBCONV_OPS
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.C, self.layers, self.layout = C, layers, layout
        self.width_mult, self.se, self.superkernel = width_mult, se, superkernel
        self.track_running_stats = track_running_stats
        self.plan = layer_plan(layout, C, layers, width_mult)
        self.edges = tuple((i, i + 1) for i in range(len(self.plan["layers"])))
        self.fixed_layers = tuple(
            i for i, spec in enumerate(self.plan["layers"]) if not skippable(*spec)
        )

    def allowed_ops(self, layer: int) -> tuple[int, ...]:
        """Op indices a genotype may choose at ``layer`` (no ``zero`` where it cannot skip)."""
        zero = self.ops.index(MBCONV_ZERO)
        return tuple(k for k in range(len(self.ops)) if k != zero or layer not in self.fixed_layers)

    def build_supernet(self, partial_channels: int = 1) -> MBConvSupernet:
        if partial_channels != 1:
            raise ValueError(
                f"Partial channel connections (PC-DARTS, K={partial_channels}) are not supported "
                "in mbconv: its layers change width and have no edge to bypass. They apply to the "
                "darts and nb201 spaces."
            )
        return MBConvSupernet(
            self.plan,
            self.input_shape,
            self.num_classes,
            self.se,
            self.superkernel,
            self.track_running_stats,
        )

    def build_child(
        self, genotype: MBConvGenotype, C: int | None = None, layers: int | None = None, **_
    ) -> nn.Module:
        """The genotype's network; ``C`` may widen it (``layers`` must be the searched one:
        the genotype has one choice per searchable layer)."""
        plan = self.plan
        if layers is not None and layers != self.layers:
            raise GenotypeError(
                f"retrain.layers={layers} does not match search_space.layers={self.layers}: an "
                "mbconv genotype has one choice per searched layer. Use retrain=mbconv (layers: "
                "null = the space's)."
            )
        if C is not None and C != self.C:
            plan = layer_plan(self.layout, C, self.layers, self.width_mult, owner="retrain")
        self.validate_genotype(genotype)
        return MBConvChildNetwork(genotype, plan, self.input_shape, self.num_classes, self.se)

    def validate_genotype(self, genotype, check_ops: bool = True) -> None:
        if getattr(genotype, "space", None) != self.name or not isinstance(
            genotype, MBConvGenotype
        ):
            raise GenotypeError(
                f"Genotype is for space {getattr(genotype, 'space', None)!r}, not {self.name!r}."
            )
        n = len(self.plan["layers"])
        if len(genotype.layers) != n:
            raise GenotypeError(
                f"This mbconv space (layout={self.layout}, layers={self.layers}) has {n} "
                f"searchable layers; the genotype names {len(genotype.layers)}."
            )
        for i in self.fixed_layers:
            if genotype.layers[i] == MBCONV_ZERO:
                valid = [self.ops[k] for k in self.allowed_ops(i)]
                raise GenotypeError(
                    f"layer {i}: 'zero' is not a choice there (the first layer of a stage changes "
                    f"the shape and cannot be skipped); valid choices are: {', '.join(valid)}."
                )

    def genotype_from_edges(self, kept: Mapping[str, Sequence[KeptEdge]]) -> MBConvGenotype:
        """One op per layer, in the order ``kept`` lists the layers."""
        return MBConvGenotype(layers=[op for op, _, _ in kept[self.cell_types[0]]], space=self.name)

    def child_input_error(self, network: str, side: int, data: str, recipe: str) -> str | None:
        """The space's layout sets the resolution (``retrain.network`` is not read)."""
        if self.layout == "cifar" and side > CIFAR_NETWORK_MAX_SIDE:
            return (
                f"search_space=mbconv with layout=cifar (one stride-1 stem for 32x32 images) "
                f"on data={data}'s {side}x{side} images: use "
                "search_space.layout=imagenet_mobile (ProxylessNAS' 224x224 stages)."
            )
        return None

    def cost_rows(self, child: nn.Module, input_shape: Sequence[int]) -> Rows:
        """Every layer's input and output width and resolution; ``zero`` on a layer that cannot
        be skipped runs the first candidate (module docstring), so it costs that."""
        captured: list[tuple[int, tuple[int, ...]]] = []
        hooks = []
        for i, layer in enumerate(child.layers):

            def hook(m, inp, o, i=i) -> None:
                captured.append((i, (*inp[0].shape[1:], o.shape[1], o.shape[2])))

            hooks.append((layer, hook))
        run_hooked(child, input_shape, hooks)
        rows = empty_rows(self.cell_types, len(self.edges), len(self.ops))
        for i, (C_in, H, W, C_out, H_out) in captured:
            stride = 2 if H_out < H else 1
            for k, op in enumerate(self.ops):
                if op == MBCONV_ZERO and i in self.fixed_layers:
                    op = self.ops[0]
                rows[self.cell_types[0]][i][k].append(
                    OpShape(op, C_in, C_out, stride, H, W, self.se)
                )
        return rows

    def stub_child(self, child: nn.Module, rows: Rows) -> nn.Module:
        stub = copy.deepcopy(child)
        for i, layer in enumerate(stub.layers):
            if layer.block is not None:
                shape = rows[self.cell_types[0]][i][0][0]  # the layer's first candidate
                layer.block = Zero(shape.C_out, shape.stride)
        return stub.eval()
