"""The MobileNet-style space (mbconv): superkernel equivalence, supernet, child network sizes,
genotype round trip and errors, selection."""

from __future__ import annotations

import json

import pytest
import torch

from nas.core.genotype import Genotype, load_genotype, resolve_genotype, save_genotype
from nas.hardware.profile import count_macs, count_params
from nas.strategies.selection import select
from supernet.genotypes import MBCONV_OPS, GenotypeError, MBConvGenotype
from supernet.spaces import build_space
from supernet.spaces.mbconv import MBConvSearchLayer, MBConvSpace, layer_plan
from supernet.superkernel import (
    MBConv,
    SuperMBConv,
    merge_kernels,
    separate_depthwise,
    superkernel_depthwise,
)

DT = torch.float64


def tiny(**kw) -> MBConvSpace:
    return MBConvSpace((3, 8, 8), 5, **{"C": 4, "layers": 2, **kw})


# --- superkernel: one merged depthwise conv = the weighted sum of the sub-kernel convs ---------


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_merged_kernel_equals_weighted_sum_values_and_gradients(per_channel, stride):
    g = torch.Generator().manual_seed(0)
    C, ks = 6, (3, 5, 7)
    x = torch.randn(2, C, 9, 9, generator=g, dtype=DT, requires_grad=True)
    W = torch.randn(C, 1, 7, 7, generator=g, dtype=DT, requires_grad=True)
    shape = (C, 3) if per_channel else (3,)
    mix = torch.randn(*shape, generator=g, dtype=DT).softmax(-1).requires_grad_()
    a = superkernel_depthwise(x, W, mix, ks, stride)
    b = separate_depthwise(x, W, mix, ks, stride)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    gy = torch.randn(a.shape, generator=g, dtype=DT)
    ga = torch.autograd.grad(a, (x, W, mix), gy)
    gb = torch.autograd.grad(b, (x, W, mix), gy)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)
    # A one-hot mix is the centred sub-kernel, zero-padded.
    merged = merge_kernels(W, torch.tensor([1.0, 0.0, 0.0], dtype=DT), ks)
    assert torch.count_nonzero(merged[..., :2, :]) == 0
    torch.testing.assert_close(merged[..., 2:5, 2:5], W[..., 2:5, 2:5])


@pytest.mark.parametrize("se", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_one_hot_superkernel_block_equals_the_separate_candidate(se, stride):
    """With the shared slices copied in, the superkernel block at a one-hot weight is exactly
    the separate MBConv of that candidate (training-mode BN: per-channel batch statistics)."""
    torch.manual_seed(0)
    C_in, C_out = 4, 6
    sup = SuperMBConv(C_in, C_out, stride, se=se).to(DT)
    with torch.no_grad():  # non-trivial BN affine parameters
        for bn in (sup.bn1, sup.bn2, sup.bn3):
            bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, C_in, 7, 7, dtype=DT)
    for i, (k, e) in enumerate(sup.candidates):
        w = torch.zeros(len(sup.candidates), dtype=DT)
        w[i] = 1.0
        ref = sup.copy_into(MBConv(C_in, C_out, k, e, stride, se=se).to(DT))
        torch.testing.assert_close(sup(x, w), ref(x), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(sup(x, w, used=[i]), ref(x), rtol=1e-10, atol=1e-10)
    # Soft weights: the kernel-level mix gets gradients to every weight and mixing weight.
    w = torch.randn(6, dtype=DT).softmax(0).requires_grad_()
    sup(x, w).square().sum().backward()
    assert torch.count_nonzero(w.grad) == 6
    assert torch.count_nonzero(sup.dw_weight.grad) == sup.dw_weight.numel()


def test_superkernel_and_separate_layers_agree_at_one_hot_weights():
    torch.manual_seed(0)
    sk = MBConvSearchLayer(4, 4, 1, se=False, superkernel=True).to(DT)
    sep = MBConvSearchLayer(4, 4, 1, se=False, superkernel=False).to(DT)
    for cand in sep.candidates:
        sk.block.copy_into(cand)
    x = torch.randn(2, 4, 6, 6, dtype=DT)
    for k in range(len(MBCONV_OPS)):
        w = torch.nn.functional.one_hot(torch.tensor(k), len(MBCONV_OPS)).to(DT)
        torch.testing.assert_close(sk(x, w), sep(x, w), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(sk(x, w, [k]), sep(x, w, [k]), rtol=1e-10, atol=1e-10)


# --- the search layer and the supernet -----------------------------------------------------


def test_one_hot_weight_reproduces_the_single_candidate_zero_and_fallback():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    keep = MBConvSearchLayer(4, 4, 1, se=False, superkernel=False)
    for k in range(6):
        w = torch.nn.functional.one_hot(torch.tensor(k), 7).float()
        torch.testing.assert_close(keep(x, w), x + keep.candidates[k](x))
    zero = torch.nn.functional.one_hot(torch.tensor(6), 7).float()
    assert torch.equal(keep(x, zero, [6]), x)  # skipped: the identity
    change = MBConvSearchLayer(4, 8, 2, se=False, superkernel=False)
    # A layer that cannot be skipped runs its first candidate in zero's place.
    torch.testing.assert_close(change(x, zero, [6]), change.candidates[0](x))


@pytest.mark.parametrize("superkernel", [True, False])
def test_supernet_forward_backward_with_weights_and_active(superkernel):
    torch.manual_seed(0)
    space = tiny(superkernel=superkernel)
    assert space.cell_types == ("layers",) and space.alpha_shape == (8, 7)
    assert space.fixed_layers == (0, 2, 4, 6) and space.edges[:2] == ((0, 1), (1, 2))
    net = space.build_supernet()
    x = torch.randn(3, 3, 8, 8)
    alpha = (1e-3 * torch.randn(space.alpha_shape)).requires_grad_()
    weights = alpha.softmax(-1)
    weights.retain_grad()
    out = net(x, {"layers": weights})
    assert out.shape == (3, 5)
    out.square().sum().backward()
    assert torch.count_nonzero(alpha.grad) == 8 * 7
    assert torch.count_nonzero(weights.grad[:, :6]) == 8 * 6
    # zero's weight is inert on the layers that cannot skip (it reaches α via the softmax only).
    assert torch.count_nonzero(weights.grad[space.fixed_layers, 6]) == 0
    # Single and two paths (GDAS / SPOS, ProxylessNAS' two sampled paths).
    for active in ([[k % 7] for k in range(8)], [[1, 4]] * 8, [[6]] * 8):
        w = torch.zeros(space.alpha_shape)
        for e, a in enumerate(active):
            w[e, a] = 1.0 / len(a)
        w.requires_grad_()
        net(x, {"layers": w}, {"layers": active}).sum().backward()
        assert w.grad is not None


def test_active_computes_only_the_listed_candidates():
    space = tiny(superkernel=False)
    net = space.build_supernet()
    calls = []
    for e, layer in enumerate(net.layers):
        for k, cand in enumerate(layer.candidates):
            cand.register_forward_hook(lambda m, i, o, key=(e, k): calls.append(key))
    active = [[2]] * 8
    net(torch.randn(2, 3, 8, 8), {"layers": torch.ones(8, 7) / 7}, {"layers": active})
    assert sorted(calls) == [(e, 2) for e in range(8)]


def test_partial_channels_refused_naming_the_valid_spaces():
    with pytest.raises(ValueError, match="not supported in mbconv.*darts and nb201"):
        tiny().build_supernet(partial_channels=4)


# --- child network --------------------------------------------------------------------------


def mbconv_params(C_in: int, C_out: int, k: int, e: int) -> int:
    h = C_in * e
    expand = 0 if e == 1 else C_in * h + 2 * h
    return expand + h * k * k + 2 * h + h * C_out + 2 * C_out


def mbconv_macs(C_in: int, C_out: int, k: int, e: int, hw_in: int, hw_out: int) -> int:
    h = C_in * e
    expand = 0 if e == 1 else hw_in * C_in * h
    return expand + hw_out * h * k * k + hw_out * h * C_out


def test_child_params_and_macs_match_a_hand_count():
    # cifar layout, C=4 (scale 1/4), 1 layer per stage: stem 3->8 (8x8), first block 8->4 (e1),
    # layers 4->6 s1, 6->10 s2, 10->20 s2, 20->24 s1; classifier 24->5. No zero (all fixed).
    space = MBConvSpace((3, 8, 8), 5, C=4, layers=1)
    g = MBConvGenotype(["k3_e3", "k5_e6", "k7_e3", "k3_e6"])
    net = space.build_child(g)
    plan = [(4, 6, 3, 3, 64, 64), (6, 10, 5, 6, 64, 16), (10, 20, 7, 3, 16, 4),
            (20, 24, 3, 6, 4, 4)]  # fmt: skip
    params = 3 * 8 * 9 + 2 * 8 + mbconv_params(8, 4, 3, 1) + 24 * 5 + 5
    params += sum(mbconv_params(ci, co, k, e) for ci, co, k, e, _, _ in plan)
    macs = 64 * 8 * 3 * 9 + mbconv_macs(8, 4, 3, 1, 64, 64) + 24 * 5
    macs += sum(mbconv_macs(*p) for p in plan)
    assert count_params(net) == params
    assert count_macs(net, [3, 8, 8]) == macs
    logits, aux = net(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 5) and aux is None
    # A skipped layer has no parameters: the identity.
    two = MBConvSpace((3, 8, 8), 5, C=4, layers=2)
    full = two.build_child(MBConvGenotype(["k3_e3"] * 8))
    skipped = two.build_child(MBConvGenotype(["k3_e3", "zero"] * 4))
    dropped = sum(mbconv_params(c, c, 3, 3) for c in (6, 10, 20, 24))
    assert count_params(full) - count_params(skipped) == dropped


def test_imagenet_mobile_layout_is_proxylessnas():
    plan = layer_plan("imagenet_mobile", 16, 4, 1.0)
    assert plan["stem"] == (32, 2) and plan["first"] == 16 and plan["feature_mix"] == 1280
    outs = [(co, s) for _, co, s in plan["layers"]]
    assert len(outs) == 21
    firsts = [outs[i] for i in (0, 4, 8, 12, 16, 20)]
    assert firsts == [(24, 2), (40, 2), (80, 2), (96, 1), (192, 2), (320, 1)]
    space = MBConvSpace((3, 224, 224), 1000, layout="imagenet_mobile", layers=4)
    assert space.fixed_layers == (0, 4, 8, 12, 16, 20)
    assert layer_plan("imagenet_mobile", 16, 4, 1.4)["stem"][0] == 48  # make_divisible(44.8)


# --- genotype -------------------------------------------------------------------------------

TEXT = "mbconv:k3_e3-zero-k5_e6-k7_e3-k3_e6-zero-k7_e6-k5_e3"


def test_genotype_text_and_json_round_trip(tmp_path):
    g = MBConvGenotype.from_text(TEXT)
    assert str(g) == TEXT and g.layers[1] == "zero"
    assert Genotype.from_dict(g.to_dict()) == g  # dispatch on "space"
    assert resolve_genotype(TEXT) == g
    save_genotype(g, tmp_path / "genotype.json")
    assert json.loads((tmp_path / "genotype.json").read_text()) == {
        "space": "mbconv",
        "layers": list(g.layers),
    }
    assert load_genotype(tmp_path / "genotype.json") == g
    tiny().validate_genotype(g)
    tiny().build_child(g)


@pytest.mark.parametrize(
    "text, match",
    [
        ("mbconv:", "expected 'mbconv:'"),
        ("k3_e3-zero", "expected 'mbconv:'"),
        ("mbconv:k3_e3-k9_e6", r"layer 1: unknown op 'k9_e6'; valid choices are: k3_e3, k3_e6"),
        ("mbconv:k3_e3,k5_e3", r"unknown op 'k3_e3,k5_e3'"),
    ],
)
def test_malformed_genotype_text_names_the_bad_value(text, match):
    with pytest.raises(GenotypeError, match=match):
        MBConvGenotype.from_text(text)


def test_genotype_that_does_not_fit_the_space_is_refused():
    space = tiny()
    with pytest.raises(GenotypeError, match="layer 2: 'zero' is not a choice there.*k3_e3, k3_e6"):
        space.validate_genotype(MBConvGenotype.from_text(TEXT.replace("k5_e6", "zero")))
    with pytest.raises(GenotypeError, match="has 8 searchable layers; the genotype names 3"):
        space.validate_genotype(MBConvGenotype(["k3_e3"] * 3))
    with pytest.raises(GenotypeError, match="not 'mbconv'"):
        space.validate_genotype(resolve_genotype("darts_v2"))
    with pytest.raises(GenotypeError, match="exactly the keys"):
        Genotype.from_dict({"space": "mbconv", "layers": ["k3_e3"], "extra": 1})
    with pytest.raises(ValueError, match="Valid choices are: imagenet_mobile, cifar"):
        tiny(layout="mobile")
    with pytest.raises(ValueError, match="ops are fixed|fixed"):
        tiny(ops=["k3_e3", "zero"])


def test_argmax_per_layer_never_skips_a_fixed_layer():
    space = tiny()
    probs = torch.full((8, 7), 0.1)
    probs[:, 6] = 0.4  # zero strongest everywhere
    probs[:, 3] = 0.2
    g = select("argmax_per_layer", {"layers": probs}, space)
    assert g.layers == ("k5_e6", "zero") * 4
    space.validate_genotype(g)
    assert space.default_selection == "argmax_per_layer"
    assert build_space("mbconv", (3, 8, 8), 5, C=4, layers=2).alpha_shape == (8, 7)
