"""The choice primitives of ``supernet.choices`` one by one, against plain PyTorch references on
random inputs: the mixed forward (``Σ_k w_k · candidate_k(x)``), the single path (only the
active candidate runs), weight entanglement (a one-hot choice equals the sliced plain layer,
zero-padded; soft weights the weighted sum of those), shared labels, dependent values, the
refusals of bad definitions, the whole example models against their fixed models, and module
genotypes."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from supernet.choices import (
    BatchNorm2d,
    ChoiceError,
    ChoiceModule,
    ChosenInputs,
    Conv2d,
    Decision,
    InputChoice,
    LayerChoice,
    LayerNorm,
    Linear,
    Repeat,
    ValueChoice,
    discover,
    fix_model,
    has_choices,
)
from supernet.genotypes import GenotypeError
from supernet.spaces import build_space
from supernet.spaces.module_genotype import ModuleGenotype

TOL = 1e-5
HERE = __name__  # this module's import path, for search_space.model


def close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b).abs().max().item()
    assert diff <= tol, f"max |Δ| = {diff:.3g} > {tol}"


def by_label(decisions: Sequence[Decision]) -> dict[str, Decision]:
    return {d.label: d for d in decisions}


def set_mix(
    decisions: Sequence[Decision],
    weights: Mapping[str, torch.Tensor],
    active: Mapping[str, Sequence[int]] | None = None,
) -> None:
    """What ``ModuleSupernet.forward`` does before the model runs: each decision its weights."""
    for d in decisions:
        d.weights = weights.get(d.label)
        d.active = None if active is None else active.get(d.label)


def one_hot(n: int, k: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(k), n).float()


def soft(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, generator=g), 0)


def pad(y: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """``y`` zero-padded to ``size`` along ``dim``."""
    shape = list(y.shape)
    shape[dim] = size - y.shape[dim]
    return torch.cat([y, y.new_zeros(shape)], dim)


def columns(decisions: Sequence[Decision]) -> list[dict[str, int]]:
    """Every assignment label → column of ``decisions``."""
    return [
        dict(zip((d.label for d in decisions), cols, strict=True))
        for cols in itertools.product(*(range(len(d.choices)) for d in decisions))
    ]


class Raises(nn.Module):
    def forward(self, *args, **kwargs):
        raise AssertionError("an inactive candidate was called")


class Holder(nn.Module):
    """Modules as attributes (``discover`` walks ``named_modules``)."""

    def __init__(self, **modules: nn.Module):
        super().__init__()
        for name, m in modules.items():
            setattr(self, name, m)


torch.manual_seed(0)


# ---- 1. mixing ------------------------------------------------------------------------------


def test_layer_choice_mixes_its_candidates():
    cands = {"a": nn.Linear(4, 4), "b": nn.Sequential(nn.Linear(4, 4), nn.Tanh()), "c": nn.ReLU()}
    lc = LayerChoice(cands, label="op")
    (d,) = discover(lc)
    assert (d.label, d.kind, d.choices) == ("op", "layer", ("a", "b", "c"))
    x = torch.randn(3, 4)
    close(lc(x), cands["a"](x))  # unbound: the first candidate
    w = soft(3, 1).requires_grad_()
    set_mix([d], {"op": w})
    out = lc(x)
    close(out, sum(w[k] * m(x) for k, m in enumerate(cands.values())))
    out.sum().backward()
    assert w.grad is not None and torch.all(w.grad != 0)


def test_layer_choice_list_candidates_are_numbered_and_default_label_is_the_path():
    model = Holder(op=LayerChoice([nn.ReLU(), nn.Tanh()]))
    (d,) = discover(model)
    assert d.label == "op" and d.choices == ("0", "1")
    assert model.op.decision is d


@pytest.mark.parametrize("reduction", ["sum", "mean", "concat"])
def test_input_choice_mixes_its_subsets(reduction):
    ic = InputChoice(4, 2, reduction=reduction, label="inp")
    (d,) = discover(ic)
    subsets = list(itertools.combinations(range(4), 2))
    assert d.kind == "input" and d.choices == tuple(subsets)
    xs = [torch.randn(2, 3, 5) for _ in range(4)]

    def reduce(chosen):
        if reduction == "concat":
            return torch.cat(chosen, 1)
        s = sum(chosen)
        return s / len(chosen) if reduction == "mean" else s

    close(ic(xs), reduce([xs[0], xs[1]]))  # unbound: the first subset
    w = soft(len(subsets), 2)
    set_mix([d], {"inp": w})
    close(ic(xs), sum(w[k] * reduce([xs[i] for i in s]) for k, s in enumerate(subsets)))
    with pytest.raises(ChoiceError, match="takes 4 inputs, got 3"):
        ic(xs[:3])


def test_repeat_mixes_its_depths():
    blocks = [nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(3)]
    rep = Repeat(blocks, depth=ValueChoice([0, 2, 3], label="depth"))
    (d,) = discover(rep)
    assert d.choices == (0, 2, 3) and d.default == 2  # the largest depth
    x = torch.randn(5, 4)
    h = [x]
    for b in blocks:
        h.append(b(h[-1]))
    close(rep(x), h[3])  # unbound: the largest depth
    w = soft(3, 3)
    set_mix([d], {"depth": w})
    close(rep(x), w[0] * h[0] + w[1] * h[2] + w[2] * h[3])


def test_repeat_from_a_factory_and_a_fixed_depth():
    made = []

    def block(i):
        made.append(i)
        return nn.Linear(4, 4)

    rep = Repeat(block, depth=ValueChoice([1, 2], label="d"))
    assert made == [0, 1] and len(rep.blocks) == 2
    plain = Repeat([nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)], depth=2)
    assert len(plain.blocks) == 2 and discover(plain) == []
    x = torch.randn(2, 4)
    close(plain(x), plain.blocks[1](plain.blocks[0](x)))


# ---- 2. single path -------------------------------------------------------------------------


def test_layer_choice_single_path_runs_only_the_active_candidate():
    good = nn.Linear(4, 4)
    lc = LayerChoice({"bad": Raises(), "good": good, "worse": Raises()}, label="op")
    (d,) = discover(lc)
    x = torch.randn(3, 4)
    w = torch.tensor([0.2, 0.5, 0.3])
    set_mix([d], {"op": w}, {"op": [1]})
    close(lc(x), 0.5 * good(x))
    set_mix([d], {"op": one_hot(3, 1)}, {"op": [1]})
    close(lc(x), good(x))
    set_mix([d], {"op": w}, {"op": []})
    with pytest.raises(ChoiceError, match="computes none of its choices"):
        lc(x)


def test_input_choice_and_repeat_single_path():
    ic = InputChoice(3, 1, reduction="sum", label="inp")
    blocks = [nn.Linear(4, 4), nn.Linear(4, 4), Raises()]
    rep = Repeat(blocks, depth=ValueChoice([1, 2, 3], label="depth"))
    ds = discover(Holder(ic=ic, rep=rep))
    x = torch.randn(2, 4)
    xs = [torch.randn(2, 4) for _ in range(3)]
    set_mix(ds, {"inp": soft(3, 4), "depth": soft(3, 5)}, {"inp": [2], "depth": [1]})
    close(ic(xs), soft(3, 4)[2] * xs[2])
    close(rep(x), soft(3, 5)[1] * blocks[1](blocks[0](x)))  # block 3 never runs


# ---- 3. slicing / weight entanglement -------------------------------------------------------


def check_entangled(
    layer: ChoiceModule, x: torch.Tensor, slice_input, pad_output, soft_ok: bool = True
) -> None:
    """At every one-hot choice (all columns computed, or only the chosen one) the layer equals
    ``fixed(..., inherit=True)`` on the sliced input, zero-padded; under soft weights it equals
    their weighted sum (``soft_ok``)."""
    ds = discover(Holder(layer=layer))
    refs = []
    for cols in columns(ds):
        values = {d.label: d.choices[cols[d.label]] for d in ds}
        plain = layer.fixed(cols, inherit=True)
        assert not isinstance(plain, ChoiceModule)
        ref = pad_output(plain(slice_input(x, values)))
        refs.append(ref)
        set_mix(ds, {d.label: one_hot(len(d.choices), cols[d.label]) for d in ds})
        close(layer(x), ref)
        set_mix(
            ds,
            {d.label: one_hot(len(d.choices), cols[d.label]) for d in ds},
            {d.label: [cols[d.label]] for d in ds},
        )
        close(layer(x), ref)
    if soft_ok:
        ws = {d.label: soft(len(d.choices), 10 + i) for i, d in enumerate(ds)}
        set_mix(ds, ws)
        coef = [
            torch.stack([ws[label][k] for label, k in cols.items()]).prod() for cols in columns(ds)
        ]
        close(layer(x), sum(c * r for c, r in zip(coef, refs, strict=True)))
    set_mix(ds, {})


def test_linear_slices_and_mixes():
    fin, fout = ValueChoice([4, 6, 8], label="in"), ValueChoice([3, 5], label="out")
    layer = Linear(fin, fout)
    assert layer.weight.shape == (5, 8)
    x = torch.randn(3, 8)
    check_entangled(layer, x, lambda x, v: x[:, : v["in"]], lambda y: pad(y, 5, 1))
    nobias = Linear(8, ValueChoice([3, 5], label="out"), bias=False)
    check_entangled(nobias, x, lambda x, v: x, lambda y: pad(y, 5, 1))
    with pytest.raises(ChoiceError, match="needs its largest value, 8"):
        layer(torch.randn(3, 6))


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_slices_channels_and_kernels(stride):
    cin, cout = ValueChoice([2, 4], label="cin"), ValueChoice([3, 6], label="cout")
    k = ValueChoice([1, 3, 5], label="k")
    layer = Conv2d(cin, cout, k, stride=stride)
    assert layer.weight.shape == (6, 4, 5, 5)
    x = torch.randn(2, 4, 7, 7)
    check_entangled(layer, x, lambda x, v: x[:, : v["cin"]], lambda y: pad(y, 6, 1))


def test_depthwise_conv2d_slices_channels_and_kernels():
    c = ValueChoice([2, 4], label="c")
    layer = Conv2d(c, c, ValueChoice([3, 5], label="k"), groups="depthwise", bias=False)
    assert layer.weight.shape == (4, 1, 5, 5)
    x = torch.randn(2, 4, 6, 6)
    check_entangled(layer, x, lambda x, v: x[:, : v["c"]], lambda y: pad(y, 4, 1))
    fixed = layer.fixed({"c": 0, "k": 0}, inherit=True)
    assert (fixed.groups, fixed.in_channels, fixed.kernel_size) == (2, 2, (3, 3))


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_slices(train):
    n = ValueChoice([3, 5], label="n")
    layer = BatchNorm2d(n)
    with torch.no_grad():
        layer.bn.weight.uniform_(0.5, 1.5)
        layer.bn.bias.normal_()
        layer.bn.running_mean.normal_()
        layer.bn.running_var.uniform_(0.5, 2.0)
    layer.train(train)
    x = torch.randn(4, 5, 3, 3) * 2 + 1
    before = layer.bn.running_mean.clone()

    # fixed() copies the running statistics, so both sides normalize with the same ones.
    ds = discover(Holder(layer=layer))
    for cols in columns(ds):
        plain = layer.fixed(cols, inherit=True).train(train)
        size = n.values[cols["n"]]
        ref = pad(plain(x[:, :size]), 5, 1)
        set_mix(ds, {"n": one_hot(2, cols["n"])})
        close(layer(x), ref)
        if train:  # the batch statistics were folded in the same way into the first channels
            close(layer.bn.running_mean[:size], plain.running_mean)
            close(layer.bn.running_var[:size], plain.running_var)
            with torch.no_grad():
                layer.bn.running_mean.copy_(before)
        else:
            close(layer.bn.running_mean, before)
    w = soft(2, 6)
    set_mix(ds, {"n": w})
    refs = [
        pad(layer.fixed({"n": k}, True).train(train)(x[:, :s]), 5, 1) for k, s in ((0, 3), (1, 5))
    ]
    close(layer(x), w[0] * refs[0] + w[1] * refs[1])
    set_mix(ds, {})


def test_layer_norm_slices_and_mixes():
    n = ValueChoice([4, 6, 8], label="n")
    layer = LayerNorm(n)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.normal_()
    x = torch.randn(2, 3, 8) * 3 + 1
    check_entangled(layer, x, lambda x, v: x[..., : v["n"]], lambda y: pad(y, 8, -1))
    plain = layer.fixed({"n": 1}, inherit=True)
    assert isinstance(plain, nn.LayerNorm) and plain.normalized_shape == (6,)


def test_fixed_without_inherit_has_the_sizes_and_fresh_weights():
    layer = Linear(ValueChoice([4, 8], label="i"), ValueChoice([3, 5], label="o"))
    discover(layer)
    with torch.no_grad():
        layer.weight.fill_(7.0)
    plain = layer.fixed({"i": 0, "o": 1}, inherit=False)
    assert plain.weight.shape == (5, 4) and not torch.any(plain.weight == 7.0)
    plain = layer.fixed({"i": 0, "o": 1}, inherit=True)
    assert torch.all(plain.weight == 7.0)


# ---- 4. shared labels -----------------------------------------------------------------------


class SharedLabels(nn.Module):
    """Two layer choices with one label, one ValueChoice object in two layers."""

    def __init__(self, num_classes: int = 10, input_shape=(1, 8, 8)):
        super().__init__()
        width = ValueChoice([4, 8])  # unlabelled: named after its first place
        self.fc1 = Linear(input_shape[0] * input_shape[1] * input_shape[2], width)
        self.act1 = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        self.fc2 = Linear(width, width)
        self.act2 = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act")
        self.head = Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.act2(self.fc2(self.act1(self.fc1(x.flatten(1))))))


def test_shared_labels_are_one_decision():
    model = SharedLabels()
    ds = discover(model)
    assert [d.label for d in ds] == ["fc1.out_features", "act"]
    assert model.act1.decision is model.act2.decision is ds[1]
    assert model.fc1._values["out_features"].decision is ds[0]
    space = build_space("module", (1, 8, 8), 10, model=f"{HERE}.SharedLabels")
    assert space.choice_counts() == (2, 2) and len(space.ops) == 2
    # one α row switches both activations (and all three widths)
    net = space.build_supernet()
    x = torch.randn(3, 1, 8, 8)
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # width 4, tanh
    m = net.model
    h = torch.tanh(F.linear(x.flatten(1), m.fc1.weight[:4], m.fc1.bias[:4]))
    h = torch.tanh(F.linear(h, m.fc2.weight[:4, :4], m.fc2.bias[:4]))
    close(net(x, {"decisions": W}), F.linear(h, m.head.weight[:, :4], m.head.bias))


def test_a_label_reused_with_other_choices_is_refused_naming_both_places():
    model = Holder(
        first=LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act"),
        second=LayerChoice({"relu": nn.ReLU(), "gelu": nn.GELU()}, label="act"),
    )
    with pytest.raises(ChoiceError, match="label 'act' names two different decisions") as err:
        discover(model)
    assert "at first" in str(err.value) and "at second" in str(err.value)
    assert "gelu" in str(err.value) and "tanh" in str(err.value)
    model = Holder(
        a=Linear(4, ValueChoice([4, 8], label="w")),
        b=Linear(4, ValueChoice([4, 16], label="w")),
    )
    with pytest.raises(ChoiceError, match="'w' names two different") as err:
        discover(model)
    assert "a.out_features" in str(err.value) and "b.out_features" in str(err.value)
    model = Holder(
        a=LayerChoice([nn.ReLU(), nn.Tanh()], label="x"),
        b=Linear(4, ValueChoice([1, 2], label="x")),
    )
    with pytest.raises(ChoiceError, match="a layer choice .* and a value choice"):
        discover(model)


# ---- 5. dependent values --------------------------------------------------------------------


def test_a_dependent_width_slices():
    alone = Linear(4, 4 * ValueChoice([2, 4], label="ratio"))
    check_entangled(alone, torch.randn(3, 4), lambda x, v: x, lambda y: pad(y, 16, 1))
    ratio = ValueChoice([2, 4], label="ratio")
    fc1, fc2 = Linear(4, 4 * ratio), Linear(4 * ratio, 4)
    assert fc1.weight.shape == (16, 4) and fc2.weight.shape == (4, 16)
    (d,) = discover(Holder(fc1=fc1, fc2=fc2))
    assert d.label == "ratio" and fc1._values["out_features"].leaves() == [ratio]
    h = torch.randn(3, 16)
    for k, r in enumerate((2, 4)):
        set_mix([d], {"ratio": one_hot(2, k)})
        plain = fc2.fixed({"ratio": k}, inherit=True)
        assert plain.in_features == 4 * r
        close(fc2(h), plain(h[:, : 4 * r]))
    set_mix([d], {})


def test_expressions_evaluate():
    w, h = ValueChoice([8, 16], label="w"), ValueChoice([2, 4], label="h")
    e = (w // h) * 3 + 1 - w // 8
    assert e.leaves() == [w, h]
    assert e.all_values() == [12, 6, 23, 11]
    assert e.max() == 23
    assert e.evaluate({w: 8, h: 4}) == 6 and (2 * w).evaluate({w: 16}) == 32


@pytest.mark.parametrize(
    "make, value",
    [
        (lambda w: Linear(4, w / 3), "2.0"),  # 6 / 3 is the float 2.0, the largest 4.0
        (lambda w: Linear(4, w - 6), "0"),
        (lambda w: Linear(w - 20, 4), "-14"),  # even the largest is below 1
        (lambda w: Conv2d(1, 12 // w - 2, 3), "0"),
        (lambda w: LayerNorm(w - 8), "-2"),
        (lambda w: BatchNorm2d(w * 0.5), "3.0"),
    ],
)
def test_expressions_not_positive_ints_are_refused(make, value):
    # refused when the layer is made (its largest size is no size) or else at discover
    with pytest.raises(ChoiceError, match="must be a positive integer for every choice") as err:
        discover(Holder(layer=make(ValueChoice([6, 12], label="w"))))
    assert f"takes the value {value}" in str(err.value) and "use //" in str(err.value)


def test_depthwise_conv_with_different_channel_choices_is_refused():
    a, b = ValueChoice([2, 4], label="a"), ValueChoice([2, 4], label="b")
    with pytest.raises(ChoiceError, match="needs in_channels and out_channels to be the same"):
        Conv2d(a, b, 3, groups="depthwise")
    with pytest.raises(ChoiceError, match="same value"):
        Conv2d(a, 4, 3, groups="depthwise")
    with pytest.raises(ChoiceError, match="groups=2 is not supported"):
        Conv2d(4, 4, 3, groups=2)


# ---- 6. bad definitions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LayerChoice({}), "needs at least one candidate"),
        (lambda: LayerChoice([]), "needs at least one candidate"),
        (lambda: LayerChoice({"f": lambda x: x}, label="op"), "must be nn.Modules, got {'f'"),
        (lambda: LayerChoice([nn.ReLU()], label=""), "label must be a non-empty string"),
        (lambda: InputChoice(2, 3), "1 <= n_chosen <= n_candidates"),
        (lambda: InputChoice(2, 0), "1 <= n_chosen <= n_candidates"),
        (lambda: InputChoice(3, 1, reduction="max"), "'max' is not valid.*sum, mean, concat"),
        (lambda: Repeat([nn.ReLU()], depth=-1), "depths must be integers >= 0, got \\[-1\\]"),
        (lambda: Repeat([nn.ReLU()], depth=ValueChoice([1, 2.5])), "integers >= 0"),
        (lambda: Repeat([nn.ReLU()], depth=ValueChoice([1, 3])), "needs 3 blocks, got 1"),
        (lambda: Repeat([nn.ReLU()], depth="2"), "must be an int or a ValueChoice"),
        (lambda: ValueChoice([]), "at least one value"),
        (lambda: ValueChoice([3, 5, 3], label="k"), "repeated values in \\[3, 5, 3\\]"),
        (lambda: ValueChoice([3, "5"]), "values must be numbers, got \\['5'\\]"),
        (lambda: ValueChoice([True, 2]), "values must be numbers"),
        (lambda: ValueChoice([1, 2], label=""), "label must be a non-empty string"),
    ],
)
def test_bad_definitions_are_refused(make, message):
    with pytest.raises(ChoiceError, match=message):
        make()


def test_even_kernels_are_refused():
    with pytest.raises(ChoiceError, match="takes the even value 4; kernels must be odd"):
        discover(Holder(layer=Conv2d(2, 2, ValueChoice([3, 4], label="k"))))
    with pytest.raises(ChoiceError, match="kernels must be odd"):
        discover(Holder(layer=Conv2d(2, ValueChoice([2, 4]), 2)))


class NoChoices(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


class WrongShape(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.fc = Linear(64, ValueChoice([5, 7], label="w"))

    def forward(self, x):
        return self.fc(x.flatten(1))


class BadChoice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = Linear(64, ValueChoice([5, 10], label="w") - 5)

    def forward(self, x):
        return self.fc(x.flatten(1))


SHARED_WIDTH = ValueChoice([4, 8], label="w")


class SharedAcrossInstances(nn.Module):
    def __init__(self, num_classes: int = 10, width=SHARED_WIDTH):
        super().__init__()  # the default argument is one object for every instance
        self.fc = Linear(64, width)
        self.head = Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.fc(x.flatten(1)))


def test_a_value_choice_shared_by_two_models_is_refused():
    with pytest.raises(ChoiceError, match="already belongs to another model.*__init__"):
        build_space("module", (1, 8, 8), 10, model=f"{HERE}.SharedAcrossInstances")


def test_bad_models_are_refused():
    with pytest.raises(ValueError, match="NoChoices has no search choices"):
        build_space("module", (1, 8, 8), 10, model=f"{HERE}.NoChoices")
    with pytest.raises(ValueError, match="returned \\(2, 7\\).*\\[2, 10\\]"):
        build_space("module", (1, 8, 8), 10, model=f"{HERE}.WrongShape")
    with pytest.raises(ChoiceError, match="BadChoice: .*positive integer"):
        build_space("module", (1, 8, 8), 10, model=f"{HERE}.BadChoice")
    with pytest.raises(ValueError, match="'no_such_package_xyz' cannot be imported"):
        build_space("module", (1, 8, 8), 10, model="no_such_package_xyz.Model")
    with pytest.raises(ValueError, match="'examples.own_model' has no 'NoSuchModel'"):
        build_space("module", (1, 8, 8), 10, model="examples.own_model.NoSuchModel")
    with pytest.raises(ValueError, match="is not an import path"):
        build_space("module", (1, 8, 8), 10, model="SmallCNN")
    with pytest.raises(ValueError, match="not an nn.Module class"):
        build_space("module", (1, 8, 8), 10, model=f"{HERE}.close")
    with pytest.raises(ValueError, match="does not apply to search_space=module"):
        build_space("module", (1, 8, 8), 10, model=f"{HERE}.WrongShape", ops=["conv"])


# ---- 7. the whole model against its fixed model ---------------------------------------------


def randomize_batch_norms(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize("name", ["SmallCNN", "TinyTransformer"])
def test_fixed_model_equals_the_supernet_at_one_hot_weights(name):
    space = build_space("module", (1, 8, 8), 10, model=f"examples.own_model.{name}")
    supernet = space.build_supernet()
    randomize_batch_norms(supernet, 0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 8, 8, generator=g)
    seen = set()
    for _ in range(5):
        genotype = space.random_genotype(g)
        cols = space.resolve(genotype).columns()
        seen.add(cols)
        W = torch.zeros(len(space.decisions), len(space.ops))
        W[range(len(cols)), list(cols)] = 1.0
        active = {"decisions": [[c] for c in cols]}
        child = space.child_from_supernet(supernet, genotype)
        assert has_choices(child) is False
        assert has_choices(supernet) is True
        for train in (False, True):
            child.train(train)
            supernet.train(train)
            state = copy.deepcopy(supernet.state_dict())
            with torch.no_grad():
                close(child(x)[0], supernet(x, {"decisions": W}))
                close(child(x)[0], supernet(x, {"decisions": W}, active))
            supernet.load_state_dict(state)  # train mode updated the running statistics
        # a plain call after the supernet forward runs the defaults again
        assert all(d.weights is None and d.active is None for d in supernet.decisions)
        fresh = space.build_child(genotype)
        assert has_choices(fresh) is False and fresh(x)[0].shape == (4, 10)
    assert len(seen) > 1


def test_fix_model_replaces_every_primitive():
    width = ValueChoice([4, 8], label="w")
    model = Holder(
        lc=LayerChoice({"a": nn.ReLU(), "b": Linear(8, width)}, label="op"),
        ic=InputChoice(3, 2, "mean", label="in"),
        rep=Repeat([nn.Linear(8, 8) for _ in range(3)], ValueChoice([1, 3], label="d")),
        ln=LayerNorm(width),
    )
    ds = by_label(discover(model))
    assert set(ds) == {"op", "in", "d", "w"}
    assert fix_model(LayerChoice([nn.Tanh()], label="t"), {"t": 0}).__class__ is nn.Tanh
    fixed = fix_model(model, {"op": 1, "in": 2, "d": 0, "w": 0})
    assert not has_choices(fixed)
    assert isinstance(fixed.lc, nn.Linear) and fixed.lc.out_features == 4
    assert isinstance(fixed.ic, ChosenInputs) and fixed.ic.indices == (1, 2)
    assert isinstance(fixed.rep, nn.Sequential) and len(fixed.rep) == 1
    assert isinstance(fixed.ln, nn.LayerNorm) and fixed.ln.normalized_shape == (4,)
    with pytest.raises(ChoiceError, match="no choice for decision 'w'"):
        LayerNorm(width).fixed({}, inherit=True)


# ---- 8. genotypes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn_space():
    return build_space("module", (1, 8, 8), 10, model="examples.own_model.SmallCNN")


def test_genotype_round_trips(cnn_space):
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        genotype = cnn_space.random_genotype(g)
        assert isinstance(genotype, ModuleGenotype)
        data = json.loads(json.dumps(genotype.to_dict()))
        assert set(data["choices"]) == {d.label for d in cnn_space.decisions}
        assert ModuleGenotype.from_dict(data) == genotype
        text = str(genotype)
        assert text.startswith("module:") and ModuleGenotype.matches_text(text)
        bare = ModuleGenotype.from_text(text)
        assert bare.options == () and bare.choice_map() == genotype.choice_map()
        assert cnn_space.resolve(bare) == genotype
        assert cnn_space.resolve(genotype).columns() == genotype.columns()


def test_bad_genotypes_are_refused(cnn_space):
    good = cnn_space.reference_genotype().choice_map()
    assert good["width"] == 32 and good["block"] == "conv3x3" and good["head_input"] == (0,)
    with pytest.raises(GenotypeError, match="unknown \\['bogus'\\]"):
        cnn_space.resolve(ModuleGenotype(choices=tuple({**good, "bogus": 1}.items())))
    missing = {k: v for k, v in good.items() if k != "width"}
    with pytest.raises(GenotypeError, match="missing \\['width'\\]"):
        cnn_space.resolve(ModuleGenotype(choices=tuple(missing.items())))
    with pytest.raises(GenotypeError, match="'width' has no choice 20.*16, 24, 32"):
        cnn_space.resolve(ModuleGenotype(choices=tuple({**good, "width": 20}.items())))
    with pytest.raises(GenotypeError, match="'block' has no choice 'conv7x7'"):
        cnn_space.resolve(
            ModuleGenotype.from_text("module:" + json.dumps({**good, "block": "conv7x7"}))
        )
    options = tuple((d.label, d.choices) for d in cnn_space.decisions)
    with pytest.raises(GenotypeError, match="chooses 'conv7x7', not one of its options"):
        ModuleGenotype(choices=tuple({**good, "block": "conv7x7"}.items()), options=options)
    with pytest.raises(GenotypeError, match="not JSON after 'module:'"):
        ModuleGenotype.from_text("module:{width: 3")
