"""``search_space.group_edges``: edges whose inputs are ready together run as one operation per
candidate, and compute what the per-edge path computes (values, gradients, BN statistics)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from supernet import grouped_edges
from supernet.grouped_edges import GroupedEdgesCell
from supernet.mixed import MixedOp
from supernet.spaces.darts import DARTS_OPS, DartsSpace, SearchCell
from supernet.spaces.nb201 import NB201Space
from tests.helpers.twins import assert_twins_agree, random_weights


def ungrouped(net: nn.Module) -> nn.Module:
    twin = copy.deepcopy(net)
    for m in twin.modules():
        if isinstance(m, GroupedEdgesCell):
            m.group_edges = False
    return twin


@pytest.mark.parametrize("partial_channels", [1, 4])
@pytest.mark.parametrize("track_running_stats", [True, False])
def test_grouped_supernet_equals_per_edge(partial_channels, track_running_stats):
    torch.manual_seed(0)
    space = DartsSpace((3, 12, 12), 7, C=8, layers=3, track_running_stats=track_running_stats)
    grouped = space.build_supernet(partial_channels=partial_channels)
    per_edge = ungrouped(grouped)
    x = torch.randn(3, 3, 12, 12)
    for step in range(2):  # the second pass starts from the statistics the first one left
        assert_twins_agree(grouped, per_edge, x, seed=step)


def test_grouped_edges_follow_a_partial_channel_change():
    """DrNAS' K change (6 → 3) resizes the candidates in place: the groups use the new ones."""
    torch.manual_seed(5)
    grouped = DartsSpace((3, 8, 8), 5, C=12, layers=3).build_supernet(partial_channels=6)
    per_edge = ungrouped(grouped)
    x = torch.randn(2, 3, 8, 8)
    assert_twins_agree(grouped, per_edge, x)
    for net in (grouped, per_edge):
        for m in net.modules():
            if isinstance(m, MixedOp):
                m.set_partial_channels(3)
    per_edge.load_state_dict(grouped.state_dict())  # the new entries were drawn at random
    for net in (grouped, per_edge):
        net.zero_grad(set_to_none=True)  # gradients of the old shapes
    assert_twins_agree(grouped, per_edge, x, seed=1)


@pytest.mark.parametrize("partial_channels", [1, 2, 4])
def test_grouped_supernet_equals_per_edge_channels_last_and_odd_sizes(
    partial_channels, monkeypatch
):
    # channels_last is the CPU default. With 4 channels split 4 ways the grouped
    # FactorizedReduce's halves have one channel each, and their stack was not viewable as
    # NCHW (found by the CPU default; reshape now). In NHWC the grouped FactorizedReduces run
    # as one 2x2 convolution (_offset_pair_as_one_conv), the per-edge ones as the pair.
    calls = []
    original = grouped_edges._offset_pair_as_one_conv
    monkeypatch.setattr(
        grouped_edges, "_offset_pair_as_one_conv", lambda *a: calls.append(a[3]) or original(*a)
    )
    torch.manual_seed(1)
    space = DartsSpace((3, 11, 13), 5, C=4, layers=3)  # odd sizes: FactorizedReduce pads
    grouped = space.build_supernet(partial_channels=partial_channels)
    grouped = grouped.to(memory_format=torch.channels_last)
    per_edge = ungrouped(grouped)
    x = torch.randn(2, 3, 11, 13).to(memory_format=torch.channels_last)
    assert_twins_agree(grouped, per_edge, x)
    assert calls and set(calls) == {8}  # the reduction cells' 8 edges leaving the inputs


@pytest.mark.parametrize("track_running_stats", [False, True])
def test_grouped_nb201_supernet_equals_per_edge(track_running_stats):
    torch.manual_seed(4)
    space = NB201Space((3, 8, 8), 5, C=4, layers=1, track_running_stats=track_running_stats)
    grouped = space.build_supernet()
    per_edge = ungrouped(grouped)
    assert [len(g) for g in grouped.layers[0].edge_groups] == [3, 2, 1]
    for step in range(2):
        assert_twins_agree(grouped, per_edge, torch.randn(2, 3, 8, 8), seed=step, shape=(6, 5))


def test_edge_normalization_and_sampled_paths_still_agree():
    torch.manual_seed(2)
    grouped = DartsSpace((3, 8, 8), 5, C=4, layers=3).build_supernet(partial_channels=2)
    per_edge = ungrouped(grouped)
    x = torch.randn(2, 3, 8, 8)
    beta = {k: torch.rand(14) for k in ("normal", "reduce")}
    assert_twins_agree(grouped, per_edge, x, edge_weights=beta)

    # Sampled and pruned paths: per op, the edges that compute it run grouped.
    def sampled(seed):
        g = torch.Generator().manual_seed(seed)
        single = [[int(torch.randint(8, (1,), generator=g))] for _ in range(14)]  # GDAS
        pairs = [torch.randperm(8, generator=g)[:2].tolist() for _ in range(14)]  # pruned
        return {"normal": single, "reduce": [[1, 4], None, [], [0], [0, 3], *pairs[5:]]}

    for seed in range(3):
        assert_twins_agree(grouped, per_edge, x, seed=seed, active=sampled(seed))


def test_grouped_sampled_paths_compute_only_the_sampled_ops():
    """GDAS-style paths, grouped: an op no edge sampled is never run (its weights get no
    gradient); the sampled ones are."""
    torch.manual_seed(6)
    net = DartsSpace((3, 8, 8), 5, C=4, layers=3).build_supernet()
    g = torch.Generator().manual_seed(0)
    active = {k: [[int(torch.randint(1, 8, (1,), generator=g))] for _ in range(14)]
              for k in ("normal", "reduce")}  # fmt: skip
    w = random_weights(14, len(DARTS_OPS), 0)
    net(torch.randn(2, 3, 8, 8), w, active=active).square().sum().backward()
    for cell in net.cells:
        kind = "reduce" if cell.reduction else "normal"
        for e, mixed in enumerate(cell.mixed):
            for k, cand in enumerate(mixed.candidates):
                for p in cand.parameters():
                    assert (p.grad is not None) == (k in active[kind][e]), (kind, e, k)


@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_type_grouped_or_not_matches_its_candidates(stride):
    """``grouped_outputs`` against each edge's own ``all_outputs``, op by op, including ops
    with no grouped form (computed per edge) and BN with a cumulative average (per edge)."""
    torch.manual_seed(3)
    ops = (*DARTS_OPS, "conv_7x1_1x7", "nor_conv_3x3", "sep_conv_7x7")
    mixed = [MixedOp(ops, 6, stride) for _ in range(3)]
    for m in mixed:  # sep_conv_3x3 with a cumulative BN average: computed per edge
        for bn in m.candidates[4].modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.momentum = None
    twins = copy.deepcopy(mixed)
    inputs = [torch.randn(2, 6, 9, 7, requires_grad=True) for _ in mixed]
    twin_inputs = [x.detach().clone().requires_grad_() for x in inputs]
    got = [outs for outs, _ in grouped_edges.grouped_outputs(mixed, inputs)]
    want = [m.all_outputs(x) for m, x in zip(twins, twin_inputs)]
    assert [len(o) for o in got] == [len(m.computed) for m in mixed]
    for outs_g, outs_w in zip(got, want):
        for a, b in zip(outs_g, outs_w):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    sum(o.square().sum() for outs in got for o in outs).backward()
    sum(o.square().sum() for outs in want for o in outs).backward()
    for x, y in zip(inputs, twin_inputs):
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-5)
    for a, b in zip(mixed, twins):
        for (name, s), t in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-6, msg=name)


def test_eval_mode_and_compiled_candidates_take_the_per_edge_path(monkeypatch):
    """Training mode groups (every candidate or sampled ones); eval mode does not; compiled
    candidates do not, unless they are partial-channel edges (PC-DARTS), which group anyway."""
    net = DartsSpace((3, 8, 8), 5, C=4, layers=3).build_supernet()
    calls = []
    real = grouped_edges.grouped_outputs
    monkeypatch.setattr(
        "supernet.grouped_edges.grouped_outputs", lambda *a: calls.append(1) or real(*a)
    )
    x, w = torch.randn(2, 3, 8, 8), random_weights(14, len(DARTS_OPS), 0)
    net(x, w)
    groups = len(calls)
    assert groups == 3 * 3  # per cell: edges of nodes 0+1, of node 2, of node 3 (node 4: one)
    net(x, w, active={k: [[4]] * 14 for k in w})
    assert len(calls) == 2 * groups
    net.eval()
    net(x, w)
    assert len(calls) == 2 * groups
    net.train()
    cell = next(m for m in net.modules() if isinstance(m, SearchCell))
    assert cell.grouped_now()
    cell.mixed[0].compile_candidates()  # lazily compiled: nothing runs here
    assert not cell.grouped_now()
    for m in cell.mixed:
        m.set_partial_channels(2)
    assert cell.grouped_now()
    # ... and their edges that run alone take the eager candidates too.
    edge = cell.mixed[0]
    edge._compiled_all = lambda x: pytest.fail("a partial-channel edge ran compiled")
    assert not edge.runs_compiled
    assert len(edge.all_outputs(torch.randn(2, edge.C_op, 8, 8))) == len(edge.computed)


class ComputeOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.n += 1
        return func(*args, **(kwargs or {}))


def test_grouping_issues_fewer_operations():
    net = DartsSpace((3, 8, 8), 5, C=4, layers=3).build_supernet()
    counts = []
    for model in (net, ungrouped(net)):
        counter = ComputeOps()
        with counter:
            model(torch.randn(2, 3, 8, 8), random_weights(14, len(DARTS_OPS), 0)).sum().backward()
        counts.append(counter.n)
    assert counts[0] < 0.8 * counts[1], counts


@pytest.mark.slow  # 25 s of Dynamo tracing
def test_grouped_supernet_traces_as_one_graph():
    """``compile_scope=model`` (the route to fused kernels inside ``cuda_graph=true``) needs the
    grouped path to trace without graph breaks: each break would be another compiled frame."""
    torch._dynamo.reset()
    net = DartsSpace((3, 8, 8), 5, C=4, layers=3).build_supernet().train()
    assert all(cell.grouped_now() for cell in net.cells)  # the grouped path is what traces
    weights = random_weights(14, len(DARTS_OPS), 0)
    explained = torch._dynamo.explain(net)(torch.randn(2, 3, 8, 8), weights)
    torch._dynamo.reset()
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_grouped_pointwise_matmul_equals_conv(channels_last):
    """``search_space.pointwise_kernel``: the grouped 1x1 convolutions (sep/dil convs,
    FactorizedReduce at stride 2 with partial channels) as batched matrix products or as
    ``F.conv2d`` give the same supernet (NHWC inputs take the convolution either way)."""
    from nas.run import builders
    from supernet.kernels import op_kernels
    from tests.helpers.config import compose_cfg

    nets = []
    for backend in ("matmul", "conv"):
        torch.manual_seed(3)
        space = DartsSpace((3, 10, 10), 5, C=6, layers=3, pointwise_kernel=backend)
        nets.append(space.build_supernet(partial_channels=2))
        if channels_last:
            nets[-1] = nets[-1].to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 10, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert_twins_agree(*nets, x)
    calls = []
    matmul = torch.matmul
    counts = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(op_kernels.torch, "matmul", lambda *a: calls.append(a) or matmul(*a))
        for net in nets:
            calls.clear()
            net(x, random_weights(14, 8, 0))
            counts.append(len(calls))
    # NCHW: the matmul net's grouped 1x1 convs are matrix products, the conv net's only its
    # per-edge ones (preprocessing, CPU default: auto); NHWC: none are
    assert (counts[0] > counts[1] > 0) if not channels_last else counts == [0, 0]
    cfg = compose_cfg(["experiment=smoke", "search_space.pointwise_kernel=conv"])
    net = builders.space_from_config(cfg).build_supernet()
    cells = [m for m in net.modules() if isinstance(m, GroupedEdgesCell)]
    assert cells and all(c.op_kernels.pointwise == "conv" for c in cells)


@pytest.mark.parametrize("partial_channels", [1, 4])
@pytest.mark.parametrize("group_edges", [True, False])
def test_channels_last_supernet_stays_channels_last(partial_channels, group_edges):
    """Every cell of an NHWC supernet (the CPU default) outputs NHWC, PC-DARTS' channel
    shuffle included: a shuffle done in NCHW turned every later cell NCHW, the slow layout on
    the CPU."""
    torch.manual_seed(0)
    space = DartsSpace((3, 16, 16), 5, C=8, layers=5, group_edges=group_edges)
    net = space.build_supernet(partial_channels=partial_channels)
    net = net.to(memory_format=torch.channels_last)
    layouts = []
    for cell in net.cells:
        cell.register_forward_hook(
            lambda m, i, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last))
        )
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    net(x, random_weights(14, 8, 0))
    assert layouts == [True] * 5
