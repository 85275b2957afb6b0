"""GDAS' fixed reduction cell (``search_space.reduce_cell=gdas_frc``): the cell, the supernet
that searches only the normal cell, the genotype form, the child network and the pipeline."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nas.core.genotype import (
    Genotype,
    GenotypeError,
    load_genotype,
    resolve_genotype,
    save_genotype,
)
from nas.hardware.profile import count_params
from nas.strategies.selection import select
from supernet.fixed_cells import GdasReductionCell, check_reduce_cell
from supernet.mixed import MixedOp
from supernet.ops import FactorizedReduce
from supernet.spaces import build_space
from supernet.spaces.darts import DartsSpace, reduction_layers
from supernet.spaces.darts_child import ChildCell, DartsChildNetwork
from supernet.spaces.darts_imagenet import DartsImageNetNetwork
from tests.helpers.runs import read_summary, run_train

TINY = {"input_shape": (3, 8, 8), "num_classes": 5, "C": 4, "layers": 3}


def frc_space(**overrides) -> DartsSpace:
    return DartsSpace(**{**TINY, "reduce_cell": "gdas_frc", **overrides})


# --- the cell ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 9])
def test_cell_halves_the_map_and_concatenates_four_branches(size: int) -> None:
    torch.manual_seed(0)
    cell = GdasReductionCell(C_pp=12, C_p=20, C=16, reduction_prev=False, affine=True)
    s0, s1 = torch.randn(2, 12, size, size), torch.randn(2, 20, size, size)
    out = cell(s0, s1)
    half = (size + 1) // 2
    assert out.shape == (2, 64, half, half) and cell.multiplier == 4
    # The branches are conv(s0), conv(s1), pool(s0), pool(s1), in that order.
    x0, x1 = cell.preprocess0(s0), cell.preprocess1(s1)
    expected = torch.cat(
        [cell.conv[0](x0), cell.conv[1](x1), cell.pool[0](x0), cell.pool[1](x1)], 1
    )
    torch.testing.assert_close(out, expected)


def test_cell_structure_is_the_published_one() -> None:
    cell = GdasReductionCell(C_pp=16, C_p=16, C=32, reduction_prev=False, affine=True)
    convs = [m for m in cell.conv[0] if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.padding, c.groups) for c in convs] == [
        ((1, 3), (1, 2), (0, 1), 8),
        ((3, 1), (2, 1), (1, 0), 8),
        ((1, 1), (1, 1), (0, 0), 1),
    ]
    pool = cell.pool[0][0]
    assert isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.stride, pool.padding) == (
        3,
        2,
        1,
    )
    # Weights: two 1x1 preprocessings, per conv branch two grouped convs and one 1x1, BN affine.
    C = 32
    per_conv_branch = 2 * (C * C // 8 * 3) + C * C + 2 * 2 * C
    expected = 2 * (16 * C + 2 * C) + 2 * per_conv_branch + 2 * 2 * C
    assert count_params(cell) == expected


def test_cell_after_a_reduction_factorizes_its_first_input() -> None:
    cell = GdasReductionCell(C_pp=8, C_p=16, C=16, reduction_prev=True, affine=False)
    assert isinstance(cell.preprocess0, FactorizedReduce)
    out = cell(torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8))
    assert out.shape == (2, 64, 4, 4)
    assert all(not m.affine for m in cell.modules() if isinstance(m, nn.BatchNorm2d))


def test_cell_drop_path_only_in_training() -> None:
    torch.manual_seed(0)
    cell = GdasReductionCell(C_pp=8, C_p=8, C=8, reduction_prev=False, affine=True)
    s0, s1 = torch.randn(16, 8, 6, 6), torch.randn(16, 8, 6, 6)
    cell.train()
    out = cell(s0, s1, drop_prob=0.5).reshape(16, 4, -1)  # [sample, branch, values]
    dropped = (out == 0).all(-1)
    assert dropped.any() and not dropped.all()  # whole branches of whole samples dropped
    cell.eval()
    torch.testing.assert_close(cell(s0, s1, drop_prob=0.5), cell(s0, s1))


def test_channel_count_must_fit_the_groups() -> None:
    with pytest.raises(ValueError, match=r"multiple of 8; got 12"):
        GdasReductionCell(C_pp=6, C_p=6, C=12, reduction_prev=False, affine=True)


@pytest.mark.parametrize("bad", ["gdas", "fixed", 3])
def test_unknown_reduce_cell_lists_the_choices(bad) -> None:
    with pytest.raises(ValueError, match=r"Valid choices are: searched, gdas_frc"):
        check_reduce_cell(bad)
    with pytest.raises(ValueError, match=r"Valid choices are: searched, gdas_frc"):
        frc_space(reduce_cell=bad)


def test_nb201_rejects_a_fixed_reduction_cell() -> None:
    with pytest.raises(ValueError, match=r"reduce_cell='gdas_frc' does not apply"):
        build_space("nb201", [3, 8, 8], 5, C=4, layers=1, reduce_cell="gdas_frc")


# --- the supernet: only the normal cell is searched ------------------------------------------


def test_supernet_searches_only_the_normal_cell() -> None:
    torch.manual_seed(0)
    space = frc_space()
    assert space.cell_types == ("normal",)
    net = space.build_supernet()
    for i, cell in enumerate(net.cells):
        fixed = i in reduction_layers(TINY["layers"])
        assert isinstance(cell, GdasReductionCell) == fixed
        assert any(isinstance(m, MixedOp) for m in cell.modules()) == (not fixed)
    alpha = torch.zeros(space.alpha_shape, requires_grad=True)
    logits = net(torch.randn(4, 3, 8, 8), {"normal": torch.softmax(alpha, -1)})
    assert logits.shape == (4, 5)
    logits.square().sum().backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    # The fixed cells are trained as network weights.
    fixed_cell = net.cells[reduction_layers(TINY["layers"])[0]]
    assert all(p.grad is not None for p in fixed_cell.parameters())


def test_fixed_cells_are_smaller_than_searched_ones() -> None:
    searched = count_params(DartsSpace(**TINY).build_supernet())
    fixed = count_params(frc_space().build_supernet())
    assert 0 < fixed < searched


def test_selection_gives_a_fixed_reduction_genotype() -> None:
    space = frc_space()
    probs = {"normal": torch.softmax(torch.randn(space.alpha_shape), -1)}
    genotype = select(space.default_selection, probs, space)
    assert genotype.reduce_cell == "gdas_frc" and genotype.fixed_reduction
    assert genotype.reduce == () and genotype.reduce_concat == ()
    assert len(genotype.normal) == 8 and genotype.normal_concat == (2, 3, 4, 5)


# --- the genotype ----------------------------------------------------------------------------


def test_published_gdas_frc_genotype_and_its_size() -> None:
    genotype = resolve_genotype("gdas_frc")
    assert genotype.reduce_cell == "gdas_frc" and genotype.normal[3] == ("sep_conv_3x3", 2)
    # Paper (Dong & Yang 2019, Table 1): GDAS (FRC) has 2.5M parameters at C=36, 20 cells.
    net = DartsChildNetwork(genotype, [3, 32, 32], 10, C=36, layers=20, auxiliary=False)
    params = count_params(net)
    assert params == 2_543_014 and 2.45e6 <= params <= 2.55e6
    reductions = [i for i, c in enumerate(net.cells) if isinstance(c, GdasReductionCell)]
    assert reductions == list(reduction_layers(20))
    assert all(
        m.affine for m in net.cells[reductions[0]].modules() if isinstance(m, nn.BatchNorm2d)
    )


def test_fixed_genotype_round_trips_as_text_and_json(tmp_path) -> None:
    genotype = resolve_genotype("gdas_frc")
    text = str(genotype)
    assert text.endswith("reduce=[], reduce_concat=[], reduce_cell='gdas_frc')")
    assert Genotype.from_text(text) == genotype
    save_genotype(genotype, tmp_path / "g.json")
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["reduce_cell"] == "gdas_frc"
    assert load_genotype(tmp_path / "g.json") == genotype
    # The reduce keys may be left out of a fixed-reduction genotype.
    del data["reduce"], data["reduce_concat"]
    assert Genotype.from_dict(data) == genotype


def test_searched_genotypes_keep_their_form() -> None:
    genotype = resolve_genotype("darts_v2")
    assert genotype.reduce_cell == "searched" and not genotype.fixed_reduction
    assert "reduce_cell" not in genotype.to_dict() and "reduce_cell" not in str(genotype)


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]]}, r"must be empty"),
        ({"reduce_concat": [2]}, r"must be empty"),
        ({"reduce_cell": "gdas"}, r"Unknown reduce_cell 'gdas'.*searched, gdas_frc"),
        ({"reduce_cell": ["gdas_frc"]}, r"Unknown reduce_cell"),
    ],
)
def test_malformed_fixed_genotypes_rejected(change: dict, pattern: str) -> None:
    data = {**resolve_genotype("gdas_frc").to_dict(), **change}
    with pytest.raises(GenotypeError, match=pattern):
        Genotype.from_dict(data)


def test_searched_genotype_still_needs_its_reduce_keys() -> None:
    data = resolve_genotype("gdas_frc").to_dict()
    del data["reduce_cell"], data["reduce"]
    with pytest.raises(GenotypeError, match=r"missing keys \['reduce'\]"):
        Genotype.from_dict(data)


def test_imagenet_network_uses_the_fixed_cell() -> None:
    genotype = resolve_genotype("gdas_frc")
    net = DartsImageNetNetwork(genotype, [3, 32, 32], 7, C=8, layers=3, auxiliary=False)
    kinds = [type(c) for c in net.cells]
    assert kinds == [ChildCell, GdasReductionCell, GdasReductionCell]
    logits, _ = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7)


# --- the pipeline ----------------------------------------------------------------------------


def test_gdas_frc_pipeline_searches_discretizes_and_retrains(tmp_path, monkeypatch) -> None:
    code = run_train(monkeypatch, tmp_path, "strategy=gdas", "search_space.reduce_cell=gdas_frc")
    assert code == 0
    alphas = json.loads((tmp_path / "alphas.json").read_text())
    assert list(alphas["alphas"]) == ["normal"]
    genotype = load_genotype(tmp_path / "genotype.json")
    assert genotype.reduce_cell == "gdas_frc"
    summary = read_summary(tmp_path)
    assert summary["genotype"] == str(genotype) and summary["test_acc"] is not None
