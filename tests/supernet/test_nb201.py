"""The NAS-Bench-201 space: genotype string, edges/ops, supernet, child network, selection,
benchmark lookup."""

from __future__ import annotations

import json

import pytest
import torch

from nas.core.genotype import (
    Genotype,
    GenotypeError,
    NB201Genotype,
    load_genotype,
    resolve_genotype,
    save_genotype,
)
from nas.estimate.benchmark import lookup
from nas.hardware.profile import count_params
from nas.strategies.selection import select
from supernet.spaces import build_space
from supernet.spaces.nb201 import NB201_OPS, NB201Space

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def test_string_round_trips(tmp_path):
    g = NB201Genotype.from_text(BEST)
    assert str(g) == BEST
    assert g.nodes[2] == (("skip_connect", 0), ("nor_conv_3x3", 1), ("nor_conv_3x3", 2))
    assert NB201Genotype.from_text(str(g)) == g
    assert Genotype.from_dict(g.to_dict()) == g  # dispatch on "space"
    save_genotype(g, tmp_path / "genotype.json")
    assert json.loads((tmp_path / "genotype.json").read_text())["space"] == "nb201"
    assert load_genotype(tmp_path / "genotype.json") == g
    assert resolve_genotype(tmp_path / "genotype.json") == g
    assert resolve_genotype(BEST) == g


@pytest.mark.parametrize(
    "text",
    ["", "nor_conv_3x3~0", "|nor_conv_3x3~0|+|conv~0|", "|nor_conv_3x3~1|", "|skip_connect|"],
)
def test_bad_strings_rejected(text):
    with pytest.raises(GenotypeError):
        NB201Genotype.from_text(text)


def test_edges_and_ops_in_benchmark_order():
    space = NB201Space((3, 32, 32), 10)
    assert space.ops == NB201_OPS == (
        "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"
    )  # fmt: skip
    assert space.edges == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert space.cell_types == ("cell",) and space.alpha_shape == (6, 5)
    assert space.edges_per_node == [1, 2, 3]


@pytest.mark.parametrize("arch, params", [(ALL_3X3, 1_531_546), (ALL_NONE, 73_306)])
def test_child_parameter_counts(arch, params):
    # The benchmark's largest and smallest CIFAR-10 networks: 1.5316 MB and 0.0733 MB.
    net = build_space("nb201", (3, 32, 32), 10).build_child(NB201Genotype.from_text(arch))
    assert count_params(net) == params
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux is None


def test_child_of_other_space_rejected():
    space = NB201Space((3, 32, 32), 10)
    with pytest.raises(GenotypeError):
        space.build_child(resolve_genotype("darts_v2"))
    with pytest.raises(GenotypeError, match="nodes"):
        space.validate_genotype(NB201Genotype.from_text("|nor_conv_3x3~0|+|none~0|none~1|"))


def test_supernet_forward_backward_and_tiny_sizes():
    torch.manual_seed(0)
    space = NB201Space((3, 8, 8), 5, C=4, layers=1)
    net = space.build_supernet()
    alpha = (1e-3 * torch.randn(space.alpha_shape)).requires_grad_()
    out = net(torch.randn(3, 3, 8, 8), {"cell": torch.softmax(alpha, -1)})
    assert out.shape == (3, 5)
    out.square().sum().backward()
    assert torch.count_nonzero(alpha.grad) > 0
    # Search-cell BN uses batch statistics by default; the residual blocks keep theirs.
    cell_bns = [m for m in net.layers[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert cell_bns and not any(m.track_running_stats or m.affine for m in cell_bns)
    with pytest.raises(ValueError, match="too small"):
        NB201Space((3, 2, 2), 5)


def test_argmax_selection_keeps_none():
    space = NB201Space((3, 8, 8), 5, C=4, layers=1)
    probs = torch.full((6, 5), 0.1)
    for e, k in enumerate([3, 0, 3, 1, 3, 0]):
        probs[e, k] = 0.6
    g = select("argmax_per_edge", {"cell": probs}, space)
    assert (
        str(g) == "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
    )


class FakeAPI:
    def query_index_by_arch(self, arch):
        return 7 if arch == BEST else -1

    def get_more_info(self, index, dataset, hp, is_random):
        assert hp == "200" and not is_random
        return {
            "test-accuracy": {"cifar10": 94.37, "cifar100": 73.51, "ImageNet16-120": 47.31}[dataset]
        }


def test_benchmark_lookup(monkeypatch):
    monkeypatch.delenv("NASBENCH201_FILE", raising=False)
    result = lookup(BEST, None)
    assert result["available"] is False and result["reason"]
    found = lookup(BEST, api=FakeAPI())
    assert found["index"] == 7 and found["cifar10_test_acc"] == 94.37
    assert found["ImageNet16-120_test_acc"] == 47.31
    assert lookup(ALL_NONE, api=FakeAPI())["available"] is False
