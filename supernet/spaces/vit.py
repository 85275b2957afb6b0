"""``search_space=vit``: an AutoFormer-style vision transformer supernet (Chen, Peng, Fu, Ling,
"AutoFormer: Searching Transformers for Visual Recognition", ICCV 2021).

Decisions: the embedding width (global), the depth, and per layer the number of heads and the
MLP ratio; the Q-K-V width of a layer is its heads times ``head_dim`` (64 in AutoFormer, whose
Q-K-V choices are exactly its head choices times 64). Weight entanglement: every choice is a
slice of the largest layer's weights (the first channels, heads and hidden units), one forward
at the sampled or mixed choice (``supernet.choices``: ``Linear``, ``LayerNorm``,
``MultiheadAttention``, ``ClassTokenPositions``, ``Repeat``). The network is ViT's
(Dosovitskiy et al., ICLR 2021): non-overlapping patches embedded linearly (a ``patch``-strided
convolution, written as a linear map of the flattened patch), a class token and learned
positions, pre-norm blocks (LayerNorm, multi-head self-attention, LayerNorm, MLP with GELU),
a final LayerNorm and a linear head on the class token. With ViT-Ti/16's knobs its child has
ViT-Ti/16's 5,717,416 parameters (tested, as DeiT-S and ViT-B/16).

The space is a built-in model of the ``module`` space (``supernet/spaces/module.py``): every
strategy, the cost tables, inherited weights and the figures work as for a user's model; the
genotype is typed (``ViTGenotype``: ``embed_dim``, ``depth``, per layer ``num_heads``,
``mlp_ratio``, ``qkv_dim``). Per-layer decisions of layers beyond the chosen depth do not
change the network; a genotype holds the used layers only (their α rows still exist).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from supernet.choices import (
    ChoiceError,
    ClassTokenPositions,
    LayerNorm,
    Linear,
    MultiheadAttention,
    Repeat,
    ValueChoice,
)
from supernet.genotypes import GENOTYPE_TYPES, GenotypeError
from supernet.spaces.module import ModuleSpace
from supernet.spaces.module_genotype import ModuleGenotype

PREFIX = "vit:"
# Patch size by image side (ViT/AutoFormer: 16 at 224; 4 at 32x32 as in CIFAR ViTs; 2 at 8x8).
PATCH_BY_SIDE = {224: 16, 32: 4, 8: 2}


def layer_label(kind: str, i: int) -> str:
    return f"{kind}_{i}"


class ViTBlock(nn.Module):
    """A pre-norm transformer block with searched heads and MLP ratio."""

    def __init__(self, embed: Any, heads: Any, ratio: Any, head_dim: int, qkv_bias: bool):
        super().__init__()
        hidden = (embed * ratio).to_int()
        self.norm1 = LayerNorm(embed, eps=1e-6)
        self.attn = MultiheadAttention(embed, heads, head_dim, bias=qkv_bias)
        self.norm2 = LayerNorm(embed, eps=1e-6)
        self.fc1 = Linear(embed, hidden)
        self.fc2 = Linear(hidden, embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViTSupernetModel(nn.Module):
    """The ViT with its choices (module docstring); ``forward(x)`` returns logits."""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        embed_dims: Sequence[int],
        depths: Sequence[int],
        num_heads: Sequence[int],
        mlp_ratios: Sequence[float],
        head_dim: int,
        patch_size: int,
        class_token: bool = True,
        qkv_bias: bool = True,
    ):
        super().__init__()
        channels, height, width = input_shape
        self.patch_size, self.class_token = patch_size, class_token
        embed = ValueChoice(list(embed_dims), label="embed_dim")
        self.patch = Linear(channels * patch_size * patch_size, embed)
        tokens = (height // patch_size) * (width // patch_size)
        self.tokens = ClassTokenPositions(tokens, embed, class_token)

        def block(i: int) -> ViTBlock:
            heads = ValueChoice(list(num_heads), label=layer_label("num_heads", i))
            ratio = ValueChoice(list(mlp_ratios), label=layer_label("mlp_ratio", i))
            return ViTBlock(embed, heads, ratio, head_dim, qkv_bias)

        self.blocks = Repeat(block, ValueChoice(list(depths), label="depth"))
        self.norm = LayerNorm(embed, eps=1e-6)
        self.head = Linear(embed, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        b, c, h, w = x.shape
        patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        t = self.blocks(self.tokens(self.patch(patches.flatten(3).flatten(1, 2))))
        t = self.norm(t)
        return self.head(t[:, 0] if self.class_token else t.mean(1))


@dataclass(frozen=True)
class ViTGenotype(ModuleGenotype):
    """A ViT architecture: ``vit:e192-d12-h3,3,3...-r4,3.5,4...`` (``-q<head_dim>`` when not 64) (heads and MLP ratio per used
    layer); ``genotype.json`` has the fields ``embed_dim``, ``depth``, ``num_heads``,
    ``mlp_ratio``, ``qkv_dim`` (per layer: heads x head_dim) and ``head_dim``, and, once resolved
    by its space, ``options`` (the choice sets by field: the file then gives α columns alone, as
    a module genotype's does; unused layers read back at their first choice)."""

    space: str = "vit"
    head_dim: int = 64

    known_ops: ClassVar[frozenset[str]] = frozenset()

    @property
    def embed_dim(self) -> int:
        return int(self.choice_map()["embed_dim"])

    @property
    def depth(self) -> int:
        return int(self.choice_map()["depth"])

    def _per_layer(self, kind: str) -> list[Any]:
        c = self.choice_map()
        return [c[layer_label(kind, i)] for i in range(self.depth) if layer_label(kind, i) in c]

    @property
    def num_heads(self) -> list[int]:
        return [int(h) for h in self._per_layer("num_heads")]

    @property
    def mlp_ratio(self) -> list[float]:
        return [float(r) for r in self._per_layer("mlp_ratio")]

    @property
    def qkv_dim(self) -> list[int]:
        return [h * self.head_dim for h in self.num_heads]

    def __str__(self) -> str:
        heads = ",".join(map(str, self.num_heads))
        ratios = ",".join(f"{r:g}" for r in self.mlp_ratio)
        head = "" if self.head_dim == 64 else f"-q{self.head_dim}"  # AutoFormer's 64: implied
        return f"{PREFIX}e{self.embed_dim}-d{self.depth}-h{heads}-r{ratios}{head}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "space": self.space,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "qkv_dim": self.qkv_dim,
            "head_dim": self.head_dim,
        }
        if self.options:  # every layer has the same sets: layer 0's stand for all
            opts = dict(self.options)
            kinds = ("embed_dim", "depth", layer_label("num_heads", 0), layer_label("mlp_ratio", 0))
            out["options"] = {k.removesuffix("_0"): list(opts[k]) for k in kinds}
        return out

    def with_options(self, sets: Mapping[str, Sequence[Any]]) -> ViTGenotype:
        """This genotype with its space's choice sets (``to_dict``'s ``options``): every layer
        up to the largest depth, a layer beyond the depth at its first choice (canonical, as
        ``ViTSpace.genotype_of`` makes it)."""
        options = [("embed_dim", tuple(sets["embed_dim"])), ("depth", tuple(sets["depth"]))]
        for i in range(max(int(d) for d in sets["depth"])):
            options.append((layer_label("num_heads", i), tuple(sets["num_heads"])))
            options.append((layer_label("mlp_ratio", i), tuple(sets["mlp_ratio"])))
        given = self.choice_map()
        choices = tuple((label, given.get(label, opts[0])) for label, opts in options)
        return replace(self, choices=choices, options=tuple(options))

    @classmethod
    def matches_text(cls, text: str) -> bool:
        return text.strip().startswith(PREFIX)

    @classmethod
    def from_fields(
        cls, embed_dim: int, depth: int, num_heads: Sequence[int], mlp_ratio: Sequence[float],
        head_dim: int = 64, space: str = "vit",
    ) -> ViTGenotype:  # fmt: skip
        if len(num_heads) != depth or len(mlp_ratio) != depth:
            raise GenotypeError(
                f"vit genotype: depth={depth} needs {depth} num_heads and mlp_ratio values, got "
                f"{len(num_heads)} and {len(mlp_ratio)}."
            )
        choices = [("embed_dim", embed_dim), ("depth", depth)]
        for i in range(depth):
            choices += [(layer_label("num_heads", i), num_heads[i])]
            choices += [(layer_label("mlp_ratio", i), mlp_ratio[i])]
        return cls(choices=tuple(choices), space=space, head_dim=head_dim)

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> ViTGenotype:
        try:
            genotype = cls.from_fields(
                int(data["embed_dim"]), int(data["depth"]), list(data["num_heads"]),
                list(data["mlp_ratio"]), int(data.get("head_dim", 64)), data.get("space", "vit"),
            )  # fmt: skip
            return genotype.with_options(data["options"]) if data.get("options") else genotype
        except (KeyError, TypeError, ValueError) as err:
            raise GenotypeError(
                f"{source}: a vit genotype has the fields embed_dim, depth, num_heads (per "
                f"layer), mlp_ratio (per layer), optionally qkv_dim and head_dim ({err!r})."
            ) from None

    @classmethod
    def from_text(cls, text: str, space: str = "vit") -> ViTGenotype:
        try:
            e, d, h, r, *q = text.strip()[len(PREFIX) :].split("-")
            heads = [int(v) for v in h[1:].split(",") if v]
            ratios = [float(v) for v in r[1:].split(",") if v]
            head_dim = int(q[0][1:]) if q else 64
            embed, depth = int(e[1:]), int(d[1:])
        except (ValueError, IndexError):
            raise GenotypeError(
                f"vit genotype text {text!r}: expected 'vit:e<embed>-d<depth>-h<heads per "
                "layer, comma-separated>-r<MLP ratios per layer, comma-separated>'."
            ) from None
        # Outside the try: a well-formed text with the wrong number of layers says so.
        return cls.from_fields(embed, depth, heads, ratios, head_dim, space=space)


GENOTYPE_TYPES["vit"] = ViTGenotype


def _layer_of(label: str) -> int:
    """The layer a per-layer decision belongs to (-1 for the global ones)."""
    per_layer = label.startswith(("num_heads_", "mlp_ratio_"))
    return int(label.rsplit("_", 1)[1]) if per_layer else -1


def _fields(genotype: ViTGenotype) -> dict[str, Any]:
    """The architecture's fields, without the choice sets it was read with."""
    return {k: v for k, v in genotype.to_dict().items() if k != "options"}


class ViTSpace(ModuleSpace):
    """The AutoFormer-style ViT space (module docstring). Options: the choice sets
    (``embed_dims``, ``depths``, ``num_heads``, ``mlp_ratios``), ``head_dim`` (Q-K-V width per
    head), ``patch_size`` (None: by the image side, ``PATCH_BY_SIDE``), ``class_token``,
    ``qkv_bias``; ``C`` scales every width to ``C / head_dim`` of it (C is the head width) and
    ``layers`` shifts the depths so the largest is ``layers`` (small test sizes)."""

    name = "vit"
    genotype_type = ViTGenotype
    layers_unit = "blocks (largest depth)"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        embed_dims: Sequence[int] = (192, 216, 240),
        depths: Sequence[int] = (12, 13, 14),
        num_heads: Sequence[int] = (3, 4),
        mlp_ratios: Sequence[float] = (3.5, 4.0),
        head_dim: int = 64,
        patch_size: int | None = None,
        class_token: bool = True,
        qkv_bias: bool = True,
        C: int | None = None,
        layers: int | None = None,
        ops: Sequence[str] = (),
    ):
        if list(ops):
            raise ValueError(
                f"search_space.ops={list(ops)} does not apply to search_space=vit: its choices "
                "are embed_dims, depths, num_heads and mlp_ratios."
            )
        if len(input_shape) != 3:
            raise ValueError(
                f"data.input_shape={list(input_shape)}: search_space=vit takes images "
                "[channels, height, width]."
            )
        side = min(input_shape[1:])
        if patch_size is None:
            if side not in PATCH_BY_SIDE:
                raise ValueError(
                    f"search_space.patch_size=null: no default patch size for {side}x{side} "
                    f"images (defaults: {PATCH_BY_SIDE}); give search_space.patch_size."
                )
            patch_size = PATCH_BY_SIDE[side]
        if any(s % patch_size for s in input_shape[1:]):
            raise ValueError(
                f"search_space.patch_size={patch_size} does not divide the image side "
                f"{list(input_shape[1:])}."
            )
        if C is not None:  # every width in units of the head width
            embed_dims = sorted({max(1, round(e * C / head_dim)) for e in embed_dims})
            head_dim = C
        if layers is not None:
            shift = max(depths) - layers
            depths = sorted({d - shift for d in depths if d - shift >= 1}) or [layers]
        self.options = {
            "embed_dims": list(embed_dims), "depths": list(depths), "num_heads": list(num_heads),
            "mlp_ratios": list(mlp_ratios), "head_dim": head_dim, "patch_size": patch_size,
            "class_token": class_token, "qkv_bias": qkv_bias,
        }  # fmt: skip
        model = {"_target_": f"{__name__}.ViTSupernetModel", **self.options}
        self.head_dim = head_dim
        super().__init__(input_shape, num_classes, model=model, C=C, layers=layers)

    def size_arguments(self, C: int | None, layers: int | None) -> dict[str, int | None]:
        """None: ``C`` and ``layers`` shaped the choice sets; a child is the genotype's own."""
        if (C is not None and C != self.C) or (layers is not None and layers != self.layers):
            raise ValueError(
                f"retrain.C={C} / retrain.layers={layers}: a vit child is the genotype's own "
                "network (its widths and depth are decisions); use retrain=vit (C and layers "
                "null)."
            )
        return {}

    @classmethod
    def banner(cls, options: Mapping[str, Any]) -> str:
        keys = ("embed_dims", "depths", "num_heads", "mlp_ratios", "head_dim", "patch_size")
        return "vit (" + ", ".join(f"{k}={options.get(k)}" for k in keys) + ")"

    @classmethod
    def child_banner(cls, network: str, C: int | None, layers: int | None) -> str:
        return "the genotype's ViT"

    # ---- typed genotypes over the module space's decisions ----------------------------------
    def genotype_of(self, columns: Sequence[int]) -> ViTGenotype:
        cols = dict(zip((d.label for d in self.decisions), columns, strict=True))
        depth = self._decision("depth").choices[cols["depth"]]
        choices, options = [], []
        for d in self.decisions:
            options.append((d.label, d.choices))
            k = cols[d.label]
            if (
                d.label.startswith(("num_heads_", "mlp_ratio_"))
                and int(d.label.rsplit("_", 1)[1]) >= depth
            ):
                k = 0  # an unused layer's choice: canonical (it changes nothing)
            choices.append((d.label, d.choices[k]))
        return ViTGenotype(
            choices=tuple(choices), options=tuple(options), space=self.name, head_dim=self.head_dim
        )

    def resolve(self, genotype: ModuleGenotype) -> ViTGenotype:
        if not isinstance(genotype, ViTGenotype):
            raise GenotypeError(f"not a vit genotype: {genotype!r}.")
        if genotype.head_dim != self.head_dim:
            raise GenotypeError(
                f"vit genotype with head_dim={genotype.head_dim}; this space's is {self.head_dim}."
            )
        given = genotype.choice_map()
        cols = []
        for d in self.decisions:
            if _layer_of(d.label) >= genotype.depth:
                cols.append(0)  # a layer the genotype does not use (a file's: any value)
            elif d.label in given:
                try:
                    cols.append(d.index_of(given[d.label]))
                except ChoiceError as err:  # a GenotypeError, as the module space's resolve
                    raise GenotypeError(f"vit genotype {genotype}: {err}") from None
            else:
                raise GenotypeError(f"vit genotype without {d.label!r}: {genotype!r}.")
        resolved = self.genotype_of(cols)
        if _fields(resolved) != _fields(genotype):
            raise GenotypeError(
                f"vit genotype {genotype} does not fit this space: as the space reads it, "
                f"{resolved} (its choices are {self.describe()})."
            )
        return resolved

    def _decision(self, label: str):
        return next(d for d in self.decisions if d.label == label)

    def reference_genotype(self) -> ViTGenotype:
        return self.genotype_of([d.default for d in self.decisions])
