"""Tests of the DARTS space: edges and ops, supernet, child network, size checks, profiling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.core.genotype import Genotype, GenotypeError, resolve_genotype
from nas.hardware.profile import count_macs, count_params
from supernet.mixed import MixedOp
from supernet.spaces import SPACES, build_space
from supernet.spaces.darts import DARTS_OPS, DartsSpace, DartsSupernet, cell_edges
from supernet.spaces.darts_child import ChildCell, DartsChildNetwork, drop_path

TINY = {"input_shape": (3, 8, 8), "num_classes": 5, "C": 4, "layers": 3}
N = 2


def _tiny_space(**overrides) -> DartsSpace:
    return DartsSpace(**{**TINY, **overrides})


def _random_weights(space: DartsSpace, requires_grad: bool = False) -> dict[str, torch.Tensor]:
    return {
        cell: torch.softmax(torch.randn(space.alpha_shape), -1).requires_grad_(requires_grad)
        for cell in space.cell_types
    }


# --- the space -----------------------------------------------------------------------------


def test_darts_edges_in_documented_order() -> None:
    space = _tiny_space()
    expected = [(0, 2), (1, 2), (0, 3), (1, 3), (2, 3), (0, 4), (1, 4), (2, 4), (3, 4)]
    expected += [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5)]
    assert [tuple(e) for e in space.edges] == expected
    assert len(space.edges) == 14
    assert cell_edges(2) == ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


def test_darts_ops_in_published_order() -> None:
    published = (
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    )
    assert DARTS_OPS == published
    space = _tiny_space()
    assert space.ops == published
    assert space.alpha_shape == (14, 8)
    assert space.cell_types == ("normal", "reduce")
    assert space.default_selection == "darts_top2"


def test_space_registry() -> None:
    assert SPACES["darts"] is DartsSpace
    assert isinstance(build_space("darts", (3, 8, 8), 5, C=4, layers=3), DartsSpace)
    with pytest.raises(ValueError, match="'nope'.*darts"):
        build_space("nope", (3, 8, 8), 5)


def test_space_rejects_bad_op_lists() -> None:
    with pytest.raises(ValueError, match="bogus_op"):
        _tiny_space(ops=("none", "bogus_op"))
    with pytest.raises(ValueError, match="'none' must be the first"):
        _tiny_space(ops=("skip_connect", "none"))
    with pytest.raises(ValueError, match="multiplier"):
        _tiny_space(steps=2, multiplier=3)
    with pytest.raises(ValueError, match="bogus"):
        _tiny_space(kernel="bogus")


def test_cifar_supernet_parameter_count() -> None:
    net = DartsSpace((3, 32, 32), 10, C=16, layers=8).build_supernet()
    assert sum(p.numel() for p in net.parameters()) == 1_930_618


# --- the supernet --------------------------------------------------------------------------


def test_supernet_forward_and_backward() -> None:
    torch.manual_seed(0)
    space = _tiny_space()
    net = space.build_supernet()
    alphas = {c: (1e-3 * torch.randn(space.alpha_shape)).requires_grad_() for c in space.cell_types}
    weights = {c: torch.softmax(a, -1) for c, a in alphas.items()}
    leaf = {c: torch.rand(space.alpha_shape, requires_grad=True) for c in space.cell_types}
    x = torch.randn(N, *TINY["input_shape"])
    logits = net(x, weights)
    assert logits.shape == (N, TINY["num_classes"])
    logits2 = net(x, leaf)
    (logits.square().sum() + logits2.square().sum()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for c in space.cell_types:
        assert alphas[c].grad is not None and torch.count_nonzero(alphas[c].grad) > 0
        # `none` is never computed: its mixing weight gets exactly zero gradient.
        assert torch.count_nonzero(leaf[c].grad[:, 0]) == 0
        assert torch.count_nonzero(leaf[c].grad[:, 1:]) > 0


@pytest.mark.parametrize("steps,multiplier", [(4, 4), (2, 2), (3, 2)])
def test_supernet_other_cell_sizes(steps: int, multiplier: int) -> None:
    torch.manual_seed(0)
    space = _tiny_space(steps=steps, multiplier=multiplier, layers=2)
    net = space.build_supernet().eval()
    assert space.alpha_shape == (sum(2 + i for i in range(steps)), 8)
    out = net(torch.randn(N, *TINY["input_shape"]), _random_weights(space))
    assert out.shape == (N, TINY["num_classes"])


@pytest.mark.parametrize("genotype_name", ["darts_v1", "darts_v2"])
def test_supernet_onehot_genotype_choice_runs(genotype_name: str) -> None:
    torch.manual_seed(0)
    space = _tiny_space()
    net = space.build_supernet().eval()
    genotype = resolve_genotype(genotype_name)
    weights = {}
    for cell in space.cell_types:
        pairs, _ = genotype.cell(cell)
        w = torch.zeros(space.alpha_shape)
        for k, (op, inp) in enumerate(pairs):
            node = 2 + k // 2
            w[space.edges.index((inp, node)), space.ops.index(op)] = 1.0
        # Edges the genotype does not use mix `none` only.
        w[w.sum(1) == 0, 0] = 1.0
        weights[cell] = w
    out = net(torch.randn(N, *TINY["input_shape"]), weights)
    assert out.shape == (N, TINY["num_classes"])
    assert torch.isfinite(out).all()


def _random_active(space: DartsSpace, gen: torch.Generator) -> list[list[int] | None]:
    """Per edge: None or a random subset of ops; every node keeps a computed op."""
    active: list[list[int] | None] = []
    for e, _ in enumerate(space.edges):
        if e % 5 == 4:
            active.append(None)
            continue
        k = int(torch.randint(1, 4, (1,), generator=gen))
        # op 1.. so no node ends up with only `none` (see test_supernet_active_all_none_node)
        subset = sorted(set((torch.randperm(len(space.ops) - 1, generator=gen)[:k] + 1).tolist()))
        if e % 3 == 0:
            subset = [0, *subset]
        active.append(subset)
    return active


def _zero_inactive(w: torch.Tensor, active: list[list[int] | None]) -> torch.Tensor:
    w = w.clone()
    for e, ops in enumerate(active):
        if ops is not None:
            keep = torch.zeros(w.shape[1], dtype=torch.bool)
            keep[ops] = True
            w[e, ~keep] = 0.0
    return w


def test_supernet_active_equals_zeroed_weights() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    space = _tiny_space()
    net = space.build_supernet().eval()
    weights = _random_weights(space)
    active = {c: _random_active(space, gen) for c in space.cell_types}
    zeroed = {c: _zero_inactive(weights[c], active[c]) for c in space.cell_types}
    x = torch.randn(N, *TINY["input_shape"])
    with torch.no_grad():
        torch.testing.assert_close(net(x, weights, active), net(x, zeroed))


def test_supernet_active_computes_only_active_ops() -> None:
    torch.manual_seed(0)
    space = _tiny_space()
    net = space.build_supernet().eval()
    calls: dict[tuple[int, int], int] = {}
    mixed = [m for m in net.modules() if isinstance(m, MixedOp)]

    def hook(key: tuple[int, int]):
        def fn(module, inputs, output) -> None:
            calls[key] = calls.get(key, 0) + 1

        return fn

    for i, m in enumerate(mixed):
        for k, cand in enumerate(m.candidates):
            cand.register_forward_hook(hook((i, k)))
    active = [[4] if e % 2 else [0, 3] for e in range(len(space.edges))]
    with torch.no_grad():
        net(
            torch.randn(N, *TINY["input_shape"]),
            _random_weights(space),
            {c: active for c in space.cell_types},
        )
    expected = {(i, k): 1 for i in range(len(mixed)) for k in ([4] if (i % 14) % 2 else [3])}
    assert calls == expected


def test_supernet_active_all_none_node() -> None:
    torch.manual_seed(0)
    space = _tiny_space()
    net = space.build_supernet().eval()
    weights = _random_weights(space)
    # Node 2 (edges 0 and 1) keeps only `none`: its output must be zero.
    active = [[0], [0]] + [None] * (len(space.edges) - 2)
    act = {c: active for c in space.cell_types}
    zeroed = {c: _zero_inactive(weights[c], active) for c in space.cell_types}
    x = torch.randn(N, *TINY["input_shape"])
    with torch.no_grad():
        torch.testing.assert_close(net(x, weights, act), net(x, zeroed))


def test_supernet_kernel_option_reaches_mixed_ops() -> None:
    # The backend name travels to every mixed op; `auto` is resolved per call on the tensors'
    # device (Triton on CUDA, PyTorch elsewhere).
    for kernel in ("auto", "torch", "triton"):
        space = _tiny_space(kernel=kernel)
        assert space.kernel == kernel
        net = space.build_supernet()
        assert all(m.kernel == kernel for m in net.modules() if isinstance(m, MixedOp))


# --- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("builder", ["space", "supernet", "child"])
def test_too_small_input_rejected(builder: str) -> None:
    kwargs = {"input_shape": (3, 2, 2), "num_classes": 10, "C": 4, "layers": 8}
    with pytest.raises(ValueError) as info:
        if builder == "space":
            DartsSpace(**kwargs)
        elif builder == "supernet":
            DartsSupernet(DARTS_OPS, **kwargs)
        else:
            DartsChildNetwork(resolve_genotype("darts_v2"), **kwargs)
    msg = str(info.value)
    assert "[3, 2, 2]" in msg and "4x4" in msg and "layers=8" in msg


@pytest.mark.parametrize("C", [5, 0, 1, -2])
def test_bad_channel_count_rejected(C: int) -> None:
    with pytest.raises(ValueError, match=rf"search_space\.C={C}\b"):
        _tiny_space(C=C)
    with pytest.raises(ValueError, match=rf"C={C}\b"):
        DartsChildNetwork(resolve_genotype("darts_v2"), TINY["input_shape"], 10, C=C, layers=3)


@pytest.mark.parametrize(
    "kwargs,word",
    [
        ({"layers": 0}, "layers"),
        ({"input_shape": (3, 8)}, "input_shape"),
        ({"input_shape": (0, 8, 8)}, "input_shape"),
    ],
)
def test_other_bad_sizes_rejected(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        _tiny_space(**kwargs)


def test_smallest_valid_input() -> None:
    torch.manual_seed(0)
    space = _tiny_space(input_shape=(3, 4, 4), layers=8)
    net = space.build_supernet().eval()
    out = net(torch.randn(N, 3, 4, 4), _random_weights(space))
    assert out.shape == (N, TINY["num_classes"])


@pytest.mark.parametrize(
    "input_shape,layers", [((3, 7, 7), 3), ((1, 9, 5), 5), ((3, 5, 5), 8)], ids=str
)
def test_odd_input_sizes(input_shape: tuple[int, int, int], layers: int) -> None:
    torch.manual_seed(0)
    space = _tiny_space(input_shape=input_shape, layers=layers, num_classes=3)
    with torch.no_grad():
        logits = space.build_supernet().eval()(torch.randn(N, *input_shape), _random_weights(space))
        assert logits.shape == (N, 3)
        child = space.build_child(resolve_genotype("darts_v2"), C=4, layers=layers).train()
        logits, aux = child(torch.randn(N, *input_shape))
    assert logits.shape == aux.shape == (N, 3)


# --- the child network ---------------------------------------------------------------------


def test_darts_v2_child_parameter_count() -> None:
    space = DartsSpace((3, 32, 32), 10)
    child = space.build_child(resolve_genotype("darts_v2"), C=36, layers=20)
    assert count_params(child) == 3_349_342
    assert count_params(child, exclude_prefix="no-such-prefix") > 3_349_342
    no_aux = space.build_child(resolve_genotype("darts_v2"), C=36, layers=20, auxiliary=False)
    assert no_aux.auxiliary is None
    assert sum(p.numel() for p in no_aux.parameters()) == 3_349_342


def _tiny_child(genotype: str = "darts_v2", **kw) -> DartsChildNetwork:
    return _tiny_space().build_child(
        resolve_genotype(genotype), C=4, layers=kw.pop("layers", 3), **kw
    )


@pytest.mark.parametrize("layers", [3, 4])
@pytest.mark.parametrize("genotype", ["darts_v1", "darts_v2"])
def test_child_forward_train_and_eval(genotype: str, layers: int) -> None:
    torch.manual_seed(0)
    child = _tiny_child(genotype, layers=layers)
    x = torch.randn(N, *TINY["input_shape"])
    child.train()
    logits, aux = child(x)
    assert logits.shape == (N, TINY["num_classes"])
    assert aux is not None and aux.shape == (N, TINY["num_classes"])
    (logits.sum() + aux.sum()).backward()
    for name, p in child.named_parameters():
        assert p.grad is not None, name
    child.eval()
    logits, aux = child(x)
    assert logits.shape == (N, TINY["num_classes"]) and aux is None


def test_child_without_auxiliary_head() -> None:
    torch.manual_seed(0)
    child = _tiny_child(auxiliary=False).train()
    logits, aux = child(torch.randn(N, *TINY["input_shape"]))
    assert logits.shape == (N, TINY["num_classes"]) and aux is None


@pytest.mark.parametrize(
    "layers",
    [
        4,
        3,
    ],
)
def test_auxiliary_head_does_not_change_main_logits(layers: int) -> None:
    torch.manual_seed(0)
    child = _tiny_child(layers=layers).train()
    x = torch.randn(N, *TINY["input_shape"])
    with torch.no_grad():
        with_aux, aux = child(x)
        assert aux is not None
        child.auxiliary = None
        without_aux, _ = child(x)
    torch.testing.assert_close(with_aux, without_aux)


def test_drop_path_zeroes_whole_samples() -> None:
    torch.manual_seed(0)
    x = torch.ones(256, 3, 4, 4)
    out = drop_path(x, 0.5)
    per_sample = out.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = (per_sample == 2.0).all(1)
    assert bool((dropped | kept).all())
    assert 0 < int(dropped.sum()) < 256
    assert torch.equal(drop_path(x, 0.0), x)


@pytest.mark.parametrize("op,spared", [("skip_connect", True), ("sep_conv_3x3", False)])
def test_child_cell_drop_path_spares_identity(op: str, spared: bool) -> None:
    torch.manual_seed(0)
    cell = ChildCell([(op, 0), (op, 1)] * 2, [2, 3], 4, 4, 4, reduction=False, reduction_prev=False)
    cell.train()
    s0, s1 = torch.randn(8, 4, 6, 6), torch.randn(8, 4, 6, 6)
    with torch.no_grad():
        ref = cell(s0, s1, 0.0)
        torch.manual_seed(1)
        dropped = cell(s0, s1, 0.7)
        cell.eval()
        eval_ref = cell(s0, s1, 0.0)
        torch.testing.assert_close(cell(s0, s1, 0.7), eval_ref)  # no drop path in eval mode
    if spared:
        torch.testing.assert_close(dropped, ref)
    else:
        assert not torch.allclose(dropped, ref)


def test_child_drop_path_prob_is_used_in_training() -> None:
    torch.manual_seed(0)
    child = _tiny_child(auxiliary=False)
    x = torch.randn(N, *TINY["input_shape"])
    child.train()
    with torch.no_grad():
        ref, _ = child(x)
        child.drop_path_prob = 0.5
        torch.manual_seed(1)
        dropped, _ = child(x)
    assert not torch.allclose(ref, dropped)


def test_child_rejects_genotype_of_other_space() -> None:
    g = resolve_genotype("darts_v2")
    # A DARTS-shaped genotype cannot claim another space (nb201 has its own genotype class).
    with pytest.raises(GenotypeError, match="nb201"):
        Genotype(g.normal, g.normal_concat, g.reduce, g.reduce_concat, space="nb201")
    with pytest.raises(GenotypeError, match="conv_7x1_1x7"):
        _tiny_space().validate_genotype(
            Genotype([("conv_7x1_1x7", 0), ("skip_connect", 1)], [2], g.reduce[:2], [2])
        )


# --- profiling -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conv,shape",
    [
        (nn.Conv2d(3, 8, 3, padding=1, bias=False), (3, 8, 8)),
        (nn.Conv2d(4, 6, 5, stride=2, padding=2), (4, 9, 9)),
        (nn.Conv2d(4, 4, 3, padding=1, groups=4), (4, 8, 8)),
        (nn.Conv2d(4, 8, (1, 7), padding=(0, 3), groups=2), (4, 6, 6)),
    ],
)
def test_count_macs_conv(conv: nn.Conv2d, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    out = conv(torch.zeros(1, *shape))
    _, C_out, H_out, W_out = out.shape
    kh, kw = conv.kernel_size
    expected = C_out * H_out * W_out * (conv.in_channels // conv.groups) * kh * kw
    assert count_macs(conv, shape) == expected


@pytest.mark.parametrize("shape", [(10,), (4, 10)])
def test_count_macs_linear(shape: tuple[int, ...]) -> None:
    linear = nn.Linear(10, 7)
    rows = 1 if len(shape) == 1 else shape[0]
    assert count_macs(linear, shape) == rows * 10 * 7


def test_count_macs_restores_mode_and_sums_layers() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    model.train()
    assert count_macs(model, (3, 8, 8)) == 4 * 8 * 8 * 3 + 5 * 4 * 8 * 8
    assert model.training
    # The hooks are removed afterwards.
    assert all(not m._forward_hooks for m in model.modules())


def test_count_macs_of_supernet_and_child() -> None:
    torch.manual_seed(0)
    space = _tiny_space()
    net = space.build_supernet()
    macs = count_macs(net, TINY["input_shape"], forward_args=(_random_weights(space),))
    assert macs > 0
    child = _tiny_child()
    assert 0 < count_macs(child, TINY["input_shape"]) < macs
