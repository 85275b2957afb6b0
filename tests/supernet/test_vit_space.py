"""``search_space=vit`` (``supernet/spaces/vit.py``): published ViTs are its children to the
parameter, a child extracted from the supernet computes what the supernet computes at the one-hot
choice, genotypes round-trip, and its cost tables price every child exactly."""

from __future__ import annotations

import json

import pytest
import torch

from nas.hardware.costs import space_cost_model
from nas.hardware.profile import count_macs, count_params
from supernet.choices import has_choices
from supernet.genotypes import Genotype, GenotypeError
from supernet.spaces import build_space
from supernet.spaces.vit import ViTGenotype

SMALL = (3, 8, 8)  # 2x2 patches, 16 tokens; C=8: heads of width 8, layers=3: depths 1-3
IMAGENET = (3, 224, 224)


def small_space():
    return build_space("vit", SMALL, 10, C=8, layers=3)


def one_hot(space, genotype) -> torch.Tensor:
    weights = torch.zeros(space.alpha_shape)
    for row, col in enumerate(genotype.columns()):
        weights[row, col] = 1.0
    return weights


def vit_params(embed, heads, ratios, patch=16, side=224, channels=3, classes=1000, head_dim=64):
    """ViT's parameter count written out (Dosovitskiy et al.; AutoFormer's
    ``get_sampled_params_numel`` less its relative-position tables): patch embedding, class
    token and positions, per block two LayerNorms, Q-K-V and projection, the MLP; final norm and
    head."""
    tokens = (side // patch) ** 2
    total = channels * patch * patch * embed + embed + embed + (tokens + 1) * embed
    for h, r in zip(heads, ratios, strict=True):
        qkv, hidden = h * head_dim, int(embed * r)
        total += 2 * embed + (embed * 3 * qkv + 3 * qkv) + (qkv * embed + embed)
        total += 2 * embed + (embed * hidden + hidden) + (hidden * embed + embed)
    return total + 2 * embed + embed * classes + classes


def imagenet_child(embed_dims, depths, num_heads, mlp_ratios, genotype):
    """The child at ImageNet size on the meta device: shapes only, no weights drawn (ViT-B's
    86 M would take seconds to initialise twice, for a count that depends on shapes alone)."""
    with torch.device("meta"):
        space = build_space(
            "vit", IMAGENET, 1000, embed_dims=embed_dims, depths=depths, num_heads=num_heads,
            mlp_ratios=mlp_ratios,
        )  # fmt: skip
        return space.build_child(space.resolve(genotype))


# ---- published networks ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "embed, heads, expected",
    [
        (192, 3, 5_717_416),  # ViT-Ti/16 (DeiT-Ti)
        (384, 6, 22_050_664),  # ViT-S/16 (DeiT-S)
        (768, 12, 86_567_656),  # ViT-B/16 (DeiT-B)
    ],
    ids=["vit_ti16", "vit_s16", "vit_b16"],
)
def test_published_vits_are_children_to_the_parameter(embed, heads, expected):
    """Depth 12, MLP ratio 4, patch 16 at 224x224, 1000 classes, class token, learned positions,
    Q-K-V bias: timm's ``vit_{tiny,small,base}_patch16_224`` counts."""
    genotype = ViTGenotype.from_fields(embed, 12, [heads] * 12, [4.0] * 12)
    child = imagenet_child([embed], [12], [heads], [4.0], genotype)
    assert count_params(child) == expected == vit_params(embed, [heads] * 12, [4.0] * 12)


def test_the_vit_ti_child_runs_at_imagenet_size():
    space = build_space("vit", IMAGENET, 1000, embed_dims=[192], depths=[12], num_heads=[3])
    assert space.options["patch_size"] == 16
    child = space.build_child(space.reference_genotype()).eval()
    with torch.no_grad():
        logits, aux = child(torch.randn(1, *IMAGENET))
    assert logits.shape == (1, 1000) and aux is None and not has_choices(child)


# The released AutoFormer subnets (microsoft/Cream AutoFormer/experiments/subnet/*.yaml) in the
# choice sets of the same files: their counts are AutoFormer's formula less the relative
# positions (experiments/transformers/README.md compares them with the paper's).
AUTOFORMER = {
    "T": (
        192,
        [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3],
        [3.5, 3.5, 3.0, 3.5, 3.0, 3.0, 4.0, 4.0, 3.5, 4.0, 3.5, 4.0, 3.5],
        ([192, 216, 240], [12, 13, 14], [3, 4], [3.0, 3.5, 4.0]),
        5_768_104,
    ),
    "S": (
        384,
        [6, 6, 5, 7, 5, 5, 5, 6, 6, 7, 7, 6, 7],
        [3.0, 3.5, 3.0, 3.5, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.5, 4.0],
        ([320, 384, 448], [12, 13, 14], [5, 6, 7], [3.0, 3.5, 4.0]),
        22_791_592,
    ),
    "B": (
        576,
        [9, 9, 9, 9, 9, 10, 9, 9, 10, 9, 10, 9, 9, 10],
        [3.5, 3.5, 4.0, 3.5, 4.0, 3.5, 3.5, 3.0, 4.0, 4.0, 3.0, 4.0, 3.0, 3.5],
        ([528, 576, 624], [14, 15, 16], [8, 9, 10], [3.0, 3.5, 4.0]),
        53_584_168,
    ),
}


@pytest.mark.parametrize("name", sorted(AUTOFORMER))
def test_the_released_autoformers_count_as_the_formula(name):
    embed, heads, ratios, sets, expected = AUTOFORMER[name]
    genotype = ViTGenotype.from_fields(embed, len(heads), heads, ratios)
    child = imagenet_child(*sets, genotype)
    assert count_params(child) == vit_params(embed, heads, ratios) == expected


# ---- inherited weights ----------------------------------------------------------------------
def test_children_from_the_supernet_compute_the_supernet_at_the_one_hot_choice():
    space = small_space()
    torch.manual_seed(0)
    supernet = space.build_supernet()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, *SMALL)
    seen = set()
    for _ in range(8):
        genotype = space.random_genotype(generator)
        seen.add(genotype.depth)
        child = space.child_from_supernet(supernet, genotype)
        assert not has_choices(child)
        assert count_params(child) == count_params(space.build_child(genotype))
        for train in (False, True):
            supernet.train(train)
            child.train(train)
            with torch.no_grad():
                expected = supernet(x, {"decisions": one_hot(space, genotype)})
                logits, _ = child(x)
            assert (logits - expected).abs().max().item() <= 1e-5, (str(genotype), train)
    assert len(seen) > 1  # the draws covered several depths


# ---- genotypes ------------------------------------------------------------------------------
def test_json_and_text_round_trip_through_the_space():
    space = small_space()
    generator = torch.Generator().manual_seed(2)
    for _ in range(10):
        genotype = space.random_genotype(generator)
        assert isinstance(genotype, ViTGenotype)
        data = json.loads(json.dumps(genotype.to_dict()))
        assert data["qkv_dim"] == [h * 8 for h in data["num_heads"]] and data["head_dim"] == 8
        assert len(data["num_heads"]) == len(data["mlp_ratio"]) == data["depth"]
        back = Genotype.from_dict(data)  # dispatched on "space": "vit"
        assert back == genotype and back.columns() == genotype.columns()
        assert space.resolve(back) == genotype
        text = ViTGenotype.from_text(str(genotype))
        assert space.resolve(text) == genotype and str(text) == str(genotype)
        without_options = {k: v for k, v in data.items() if k != "options"}
        assert space.resolve(Genotype.from_dict(without_options)) == genotype
    # A file of one space reads in another that has its used choices: its unused layers (at
    # the first of its own sets, 3 heads) are not asked for.
    shallow = ViTGenotype.from_fields(24, 1, [4], [4.0], head_dim=8).with_options(
        {"embed_dim": [24], "depth": [1, 2, 3], "num_heads": [3, 4], "mlp_ratio": [3.5, 4.0]}
    )
    other = build_space("vit", SMALL, 10, C=8, layers=3, num_heads=[4, 5])
    assert str(other.resolve(Genotype.from_dict(shallow.to_dict()))) == "vit:e24-d1-h4-r4-q8"


def test_unused_layers_are_canonical():
    space = small_space()
    labels = [d.label for d in space.decisions]
    cols = [0] * len(labels)
    cols[labels.index("depth")] = 0  # depth 1: layers 1 and 2 unused
    other = list(cols)
    other[labels.index("num_heads_2")] = 1
    other[labels.index("mlp_ratio_1")] = 1
    a, b = space.genotype_of(cols), space.genotype_of(other)
    assert a == b and a.depth == 1 and a.num_heads == [3] and a.mlp_ratio == [3.5]
    assert str(a) == "vit:e24-d1-h3-r3.5-q8"
    # A genotype naming its used layers only resolves to the same one.
    assert space.resolve(ViTGenotype.from_fields(24, 1, [3], [3.5], head_dim=8)) == a


def test_bad_genotypes_are_refused_with_the_reason():
    space = small_space()
    with pytest.raises(GenotypeError, match="depth=2 needs 2 num_heads and mlp_ratio"):
        ViTGenotype.from_fields(24, 2, [3], [3.5, 4.0], head_dim=8)
    with pytest.raises(GenotypeError, match="needs 2 num_heads"):
        Genotype.from_dict({"space": "vit", "embed_dim": 24, "depth": 2, "num_heads": [3, 3],
                            "mlp_ratio": [4.0], "head_dim": 8})  # fmt: skip
    with pytest.raises(GenotypeError, match="needs 3 num_heads"):
        ViTGenotype.from_text("vit:e24-d3-h3,3-r4,4,4-q8")
    with pytest.raises(GenotypeError, match="expected 'vit:e<embed>"):
        ViTGenotype.from_text("vit:e24-d3")
    with pytest.raises(GenotypeError, match="head_dim=64; this space's is 8"):
        space.resolve(ViTGenotype.from_fields(24, 1, [3], [4.0]))
    with pytest.raises(GenotypeError, match="num_heads_0. has no choice 5"):
        space.resolve(ViTGenotype.from_fields(24, 1, [5], [4.0], head_dim=8))


def test_patch_size_defaults_and_refusals():
    assert build_space("vit", (1, 8, 8), 10, C=8, layers=1).options["patch_size"] == 2
    assert build_space("vit", (3, 32, 32), 10, C=8, layers=1).options["patch_size"] == 4
    with torch.device("meta"):
        assert build_space("vit", IMAGENET, 1000).options["patch_size"] == 16
    with pytest.raises(ValueError, match=r"no default patch size for 28x28.*patch_size"):
        build_space("vit", (1, 28, 28), 10)
    assert build_space("vit", (1, 28, 28), 10, patch_size=7, C=8, layers=1).options[
        "patch_size"
    ] == 7  # fmt: skip
    with pytest.raises(ValueError, match=r"patch_size=5 does not divide the image side"):
        build_space("vit", (3, 32, 32), 10, patch_size=5)
    with pytest.raises(ValueError, match=r"takes images"):
        build_space("vit", (64,), 10)


# ---- costs ----------------------------------------------------------------------------------
def test_cost_tables_price_every_child_exactly():
    space = small_space()
    model = space_cost_model(space)
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        genotype = space.random_genotype(generator)
        child = space.build_child(genotype)
        assert model.genotype_cost(space, genotype, "params") == count_params(child)
        assert model.genotype_cost(space, genotype, "macs") == count_macs(child, SMALL)


@pytest.mark.slow
def test_cost_tables_are_exact_at_autoformer_t_size():
    """AutoFormer-T's space at 224x224 (the tables take about 15 s on a CPU)."""
    space = build_space("vit", IMAGENET, 1000)
    model = space_cost_model(space)
    generator = torch.Generator().manual_seed(4)
    for _ in range(3):
        genotype = space.random_genotype(generator)
        child = space.build_child(genotype)
        assert model.genotype_cost(space, genotype, "params") == count_params(child)
        assert model.genotype_cost(space, genotype, "macs") == count_macs(child, IMAGENET)
