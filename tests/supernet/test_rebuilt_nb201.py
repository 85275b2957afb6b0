"""NAS-Bench-201 rebuilt with the choice primitives (``examples/nb201_module.py``, run as
``search_space=module``) against the built-in space (``search_space=nb201``): the same parameters,
the same initial weights for one torch seed, the same outputs up to the order of the weighted
sums, and the same search trajectory. The measured figures are in
``experiments/own_model/README.md``; ``-s`` prints them."""

from __future__ import annotations

import json
import re

import pytest
import torch

from examples.nb201_module import edge_label
from nas.hardware.profile import count_params
from supernet.genotypes import NB201Genotype
from supernet.spaces import build_space
from supernet.spaces.module_genotype import ModuleGenotype
from tests.helpers.runs import alphas, run_train_unlogged, weights

MODEL = "examples.nb201_module.NB201Module"
SMALL = {"input_shape": (3, 8, 8), "C": 8, "layers": 1}  # experiment=smoke data=synthetic sizes
BENCH = {"input_shape": (3, 32, 32), "C": 16, "layers": 5}  # the benchmark's network

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
MIXED = "|avg_pool_3x3~0|+|none~0|nor_conv_1x1~1|+|nor_conv_1x1~0|skip_connect~1|none~2|"


def spaces(input_shape, C, layers, **nb201):
    """(built-in nb201 space, module space of ``NB201Module``), one size."""
    builtin = build_space("nb201", input_shape, 10, C=C, layers=layers, **nb201)
    module = build_space("module", input_shape, 10, model=MODEL, C=C, layers=layers)
    return builtin, module


def seeded_supernets(builtin, module, seed: int = 0):
    torch.manual_seed(seed)
    a = builtin.build_supernet()
    torch.manual_seed(seed)
    b = module.build_supernet()
    return a, b


def module_name(name: str, ops) -> str:
    """The module supernet's name of a built-in supernet's parameter or buffer: candidate k of a
    mixed op is the LayerChoice's candidate named ``ops[k]``, under the wrapper's ``model.``."""
    m = re.fullmatch(r"(layers\.\d+\.mixed\.\d+\.candidates\.)(\d+)(\..+)", name)
    if m:
        name = m.group(1) + ops[int(m.group(2))] + m.group(3)
    return "model." + name


def module_genotype(module, genotype: NB201Genotype) -> ModuleGenotype:
    """The module space's genotype of an NB201 cell: edge i→j's label → its op."""
    choices = {edge_label(i, j): op for j, node in enumerate(genotype.nodes, 1) for op, i in node}
    return module.resolve(ModuleGenotype(choices=tuple(choices.items())))


def child_name(name: str, genotype: NB201Genotype, edges) -> str:
    """The module child's name of a built-in child's parameter or buffer (node n's k-th kept
    op → the fixed edge of its input)."""
    m = re.fullmatch(r"(layers\.\d+\.)ops\.(\d+)\.(\d+)(\..+)", name)
    if m:
        n, k = int(m.group(2)), int(m.group(3))
        inputs = [i for op, i in genotype.nodes[n] if op != "none"]
        e = edges.index((inputs[k], n + 1))
        name = f"{m.group(1)}mixed.{e}{m.group(4)}"
    return "model." + name


# ---- (a) parameters, α rows and initial weights --------------------------------------------


@pytest.mark.parametrize("sizes", [SMALL, BENCH], ids=["C8N1", "C16N5"])
def test_same_rows_parameters_and_initial_weights(sizes):
    builtin, module = spaces(**sizes)
    # One α row per edge, in the built-in's edge order; the columns are its ops.
    assert [d.label for d in module.decisions] == [edge_label(i, j) for i, j in builtin.edges]
    assert all(d.names == builtin.ops for d in module.decisions)
    assert module.alpha_shape == builtin.alpha_shape == (6, 5)
    a, b = seeded_supernets(builtin, module)
    print(f"\nsupernet params {sizes}: built-in {count_params(a):,}, module {count_params(b):,}")
    assert count_params(a) == count_params(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert {module_name(k, builtin.ops) for k in sa} == set(sb)
    # Built in the same order: the same torch seed gives bitwise the same initial weights.
    for k, v in sa.items():
        assert torch.equal(v, sb[module_name(k, builtin.ops)]), k


@pytest.mark.parametrize(
    "arch, params", [(ALL_3X3, 1_531_546), (ALL_NONE, 73_306), (BEST, None), (MIXED, None)]
)
def test_same_child_parameters(arch, params):
    builtin, module = spaces(**BENCH)
    genotype = NB201Genotype.from_text(arch)
    child_a = builtin.build_child(genotype)
    child_b = module.build_child(module_genotype(module, genotype))
    print(
        f"\nchild params {arch}: built-in {count_params(child_a):,}, module {count_params(child_b):,}"
    )
    assert count_params(child_a) == count_params(child_b)
    if params is not None:  # the benchmark's largest and smallest CIFAR-10 networks
        assert count_params(child_b) == params


@pytest.mark.parametrize("arch", [BEST, MIXED])
def test_inherited_child_is_the_supernet_at_the_genotype(arch):
    """``retrain.inherit``: the chosen ops are the supernet's own (non-affine BN, batch
    statistics), so the inherited child computes the supernet at the one-hot genotype, in
    train and eval mode, and has the supernet's cell BNs: no affine parameters (the from-scratch
    child above has 2 per channel of each conv op's BN)."""
    builtin, module = spaces(**SMALL)
    genotype = module_genotype(module, NB201Genotype.from_text(arch))
    torch.manual_seed(0)
    supernet = module.build_supernet()
    inherited = module.child_from_supernet(supernet, genotype)
    one_hot = torch.nn.functional.one_hot(torch.tensor(genotype.columns()), 5).float()
    x = torch.randn(8, *SMALL["input_shape"])
    for mode in (True, False):
        supernet.train(mode), inherited.train(mode)
        assert torch.equal(supernet(x, {"decisions": one_hot}), inherited(x)[0])
    scratch = module.build_child(genotype)
    convs = sum(op.startswith("nor_conv") for _, op in genotype.choices)
    assert count_params(scratch) - count_params(inherited) == 2 * convs * (8 + 16 + 32)


@pytest.mark.parametrize("arch", [BEST, ALL_NONE, MIXED])
def test_same_child_outputs(arch):
    """The built-in child's weights loaded into the module's child by name: the same logits,
    bitwise (a pruned ``none`` edge adds an exact zero)."""
    builtin, module = spaces(**SMALL)
    genotype = NB201Genotype.from_text(arch)
    torch.manual_seed(0)
    child_a = builtin.build_child(genotype, C=8, layers=1)
    child_b = module.build_child(module_genotype(module, genotype))
    sa = child_a.state_dict()
    mapped = {child_name(k, genotype, builtin.edges): v for k, v in sa.items()}
    assert set(mapped) == set(child_b.state_dict())
    child_b.load_state_dict(mapped)
    x = torch.randn(8, *SMALL["input_shape"])
    for mode in (True, False):  # batch statistics, then running statistics
        child_a.train(mode), child_b.train(mode)
        assert torch.equal(child_a(x)[0], child_b(x)[0])


# ---- (b) outputs under the same mixing weights ---------------------------------------------


def forward_both(a, b, x, w):
    """Logits and α gradients (of the logits' squared sum) of both supernets at weights ``w``."""
    wa, wb = w.clone().requires_grad_(), w.clone().requires_grad_()
    ya, yb = a(x, {"cell": wa}), b(x, {"decisions": wb})
    ya.square().sum().backward()
    yb.square().sum().backward()
    return ya, yb, wa.grad, wb.grad


@pytest.mark.parametrize("group_edges", [True, False], ids=["grouped", "per_edge"])
def test_same_outputs_under_softmax_weights(group_edges):
    """Softmax of one random α, rows in the same order. The two sum the same terms in another
    order: the built-in accumulates a node's weighted candidate outputs of every edge in one
    sum (``kernels.mix``: a product, then ``addcmul_``), the module sums each edge's candidates
    (``LayerChoice``: product, then add) and then the edges; float32 rounding differs by a few
    ulps of the logits (measured: 4.8e-7 on logits up to 0.8), hence an absolute 1e-5."""
    builtin, module = spaces(**SMALL, group_edges=group_edges)
    a, b = seeded_supernets(builtin, module)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, *SMALL["input_shape"], generator=g)
    w = torch.randn(builtin.alpha_shape, generator=g).softmax(-1)
    ya, yb, ga, gb = forward_both(a, b, x, w)
    out_diff, grad_diff = (ya - yb).abs().max().item(), (ga - gb).abs().max().item()
    print(
        f"\ngroup_edges={group_edges}: max |Δ logits| {out_diff:.2g} (|logits| ≤ "
        f"{ya.abs().max().item():.2g}), max |Δ dL/dw| {grad_diff:.2g} (|dL/dw| ≤ "
        f"{ga.abs().max().item():.2g})"
    )
    assert out_diff <= 1e-5
    assert grad_diff <= 1e-5 * ga.abs().max().item()
    # The weights' gradients too (mapped by name).
    pa = dict(a.named_parameters())
    pb = dict(b.named_parameters())
    for k, p in pa.items():
        q = pb[module_name(k, builtin.ops)]
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5), k


def test_one_hot_weights_are_exact_per_edge():
    """One-hot weights: every product is by 0 or 1 and every sum adds exact zeros, so the order
    no longer matters: per edge (``group_edges=false``) logits and α gradients are bitwise
    equal. The difference above is the weighted sums' order, nothing else."""
    builtin, module = spaces(**SMALL, group_edges=False)
    a, b = seeded_supernets(builtin, module)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, *SMALL["input_shape"], generator=g)
    w = torch.nn.functional.one_hot(torch.tensor([3, 2, 1, 4, 3, 0]), 5).float()
    ya, yb, ga, gb = forward_both(a, b, x, w)
    assert torch.equal(ya, yb) and torch.equal(ga, gb)


# ---- (c) the search trajectory ---------------------------------------------------------------


def search(tmp_path, monkeypatch, name: str, *overrides: str):
    """``train.py experiment=smoke stage=search data=synthetic`` at C=8, N=1, one thread."""
    run_dir = tmp_path / name
    common = ["stage=search", "data=synthetic", "search_space.C=8", "search_space.layers=1"]
    assert run_train_unlogged(monkeypatch, run_dir, *common, "threads=1", *overrides) == 0
    return run_dir


BUILTIN = ("search_space=nb201",)
MODULE = ("search_space=module", f"search_space.model={MODEL}")


def compare_runs(a_dir, b_dir) -> tuple[float, float, bool]:
    """(max |Δα|, max |Δ weight| of the last search checkpoints, same genotype) of two search
    runs, each of the built-in space or the module space (α rows: the same edges, checked)."""
    builtin, module = spaces(**SMALL)
    assert [d.label for d in module.decisions] == [edge_label(i, j) for i, j in builtin.edges]

    def alpha(run_dir):
        return torch.tensor(next(iter(alphas(run_dir)["alphas"].values())), dtype=torch.float64)

    def state(run_dir):
        out = {}
        for k, v in weights(run_dir).items():
            if not k.startswith("supernet."):
                continue
            k = k[len("supernet.") :]
            out[k if k.startswith("model.") else module_name(k, builtin.ops)] = v.double()
        return out

    def choices(run_dir):
        data = json.loads((run_dir / "genotype.json").read_text())
        if data["space"] == "module":
            return data["choices"]
        return module_genotype(module, NB201Genotype.from_dict(data)).choice_map()

    d_alpha = (alpha(a_dir) - alpha(b_dir)).abs().max().item()
    wa, wb = state(a_dir), state(b_dir)
    assert wa.keys() == wb.keys()
    d_weight = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    return d_alpha, d_weight, choices(a_dir) == choices(b_dir)


LONGER = ("trainer.limit_train_batches=16", "data.num_samples=512")


def test_same_search_trajectory(tmp_path, monkeypatch):
    """DARTS (first order) for 3 epochs of 16 batches (48 alternating weight and α steps) both
    ways: the same α and weights up to float rounding, the same genotype. (Measured: max |Δα|
    5.6e-9 with α up to 1.1e-2; the rounding differences grow later, see the slow test.)"""
    steps = ("trainer.max_epochs=3", *LONGER)
    a_dir = search(tmp_path, monkeypatch, "nb201", *BUILTIN, *steps)
    b_dir = search(tmp_path, monkeypatch, "module", *MODULE, *steps)
    d_alpha, d_weight, same = compare_runs(a_dir, b_dir)
    print(f"\n3x16 steps: max |Δα| {d_alpha:.2g}, max |Δ weight| {d_weight:.2g}, same: {same}")
    assert d_alpha < 1e-6
    assert d_weight < 1e-4
    assert same


@pytest.mark.slow
def test_search_trajectory_longer_against_a_perturbed_builtin(tmp_path, monkeypatch):
    """10 epochs of 16 batches (160 steps): the rounding differences have grown, as much as
    between the built-in and itself with α's initial values moved by about 1e-9
    (``strategy.alpha_init_std`` times 1 + 1e-6): the search amplifies any float rounding,
    whichever way the network is written. (Measured: 1.1e-3 both, α up to 2.5e-2; the same
    genotype.)"""
    steps = ("trainer.max_epochs=10", *LONGER)
    a_dir = search(tmp_path, monkeypatch, "nb201", *BUILTIN, *steps)
    b_dir = search(tmp_path, monkeypatch, "module", *MODULE, *steps)
    c_dir = search(
        tmp_path, monkeypatch, "perturbed", *BUILTIN, *steps, "strategy.alpha_init_std=0.001000001"
    )
    d_alpha, d_weight, same = compare_runs(a_dir, b_dir)
    c_alpha, c_weight, c_same = compare_runs(a_dir, c_dir)
    print(
        f"\n10x16 steps: module: max |Δα| {d_alpha:.2g}, max |Δ weight| {d_weight:.2g}, same "
        f"genotype: {same}; perturbed built-in: max |Δα| {c_alpha:.2g}, max |Δ weight| "
        f"{c_weight:.2g}, same genotype: {c_same}; max |α| "
        f"{torch.tensor(alphas(a_dir)['alphas']['cell']).abs().max().item():.2g}"
    )
    assert d_alpha < 5e-3  # a tenth of α's range after 160 steps
    assert same


def test_building_a_module_space_leaves_the_seeded_rng_alone():
    """A report rebuilds the space after the run is seeded: the model probes and cost-table
    modules it builds must not draw from the global RNG (else the supernet's initial weights
    would depend on the space kind)."""
    torch.manual_seed(0)
    before = torch.get_rng_state()
    build_space("module", (3, 8, 8), 10, model=MODEL, C=8, layers=1)
    assert torch.equal(torch.get_rng_state(), before)
