"""Figures: the α heatmap centred on uniform, genotype cells, cell diagrams, PNG writing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from matplotlib.patches import FancyArrowPatch
from PIL import Image

from nas.core.genotype import (
    PARAM_FREE_OPS,
    ZOO_FILE,
    Genotype,
    NB201Genotype,
    count_op,
    param_free_ops,
    resolve_genotype,
)
from nas.search.figures import (
    CHOSEN_GID,
    DPI,
    FAMILIES,
    alpha_heatmap,
    cell_diagram,
    chosen_cells,
    genotype_figures,
    save_png,
)
from supernet.ops import OPS
from supernet.spaces.darts import DartsSpace
from supernet.spaces.nb201 import NB201Space
from tests.helpers import modules

NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def darts() -> DartsSpace:
    return DartsSpace(input_shape=(3, 8, 8), num_classes=5, C=4, layers=3)


@pytest.fixture(scope="module", name="nb201")
def nb201_space() -> NB201Space:
    # The figures read the ops and edges only: the benchmark's size (32x32, C=16, 5 cells)
    # has the same ones.
    return modules.nb201()


def _image(fig):
    return fig.axes[0].images[0]


def _assert_png(path, fig_size_inches) -> np.ndarray:
    """The PNG decodes, has the figure's pixel size and is not blank."""
    assert path.is_file()
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    w, h = (np.asarray(fig_size_inches) * DPI).round()
    assert abs(pixels.shape[1] - w) <= 1 and abs(pixels.shape[0] - h) <= 1
    assert pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    return pixels


def test_uniform_alpha_is_the_colormaps_centre(darts):
    E, K = darts.alpha_shape
    fig = alpha_heatmap(torch.zeros(E, K).softmax(-1), darts.ops, darts.edges)
    im = _image(fig)
    assert im.norm(1.0 / K) == pytest.approx(0.5)
    colours = im.to_rgba(np.asarray(im.get_array()))
    assert np.allclose(colours, im.cmap(0.5), atol=1e-6)


def test_near_uniform_alpha_looks_near_uniform_and_says_its_spread(darts):
    """The first epochs of a DARTS search: every weight within 5e-3 of 1/K. The colour scale
    is not stretched to that spread: every cell stays near white, and the title states the
    spread with 4 decimals, as the values are printed."""
    E, K = darts.alpha_shape
    gen = torch.Generator().manual_seed(0)
    probs = (1e-2 * torch.randn(E, K, generator=gen)).softmax(-1).double()
    spread = float((probs - 1 / K).abs().max())
    assert 1e-3 < spread < 5e-3
    fig = alpha_heatmap(probs, darts.ops, darts.edges, title="epoch 1/8: normal cell α")
    im = _image(fig)
    assert (im.norm.vmin, im.norm.vcenter, im.norm.vmax) == (0.0, pytest.approx(1 / K), 1.0)
    assert np.abs(im.norm(probs.numpy()) - 0.5).max() < 0.03  # all within 3% of white
    colours = im.to_rgba(probs.numpy())
    assert np.abs(colours - np.asarray(im.cmap(0.5))).max() < 0.06
    title = fig.axes[0].get_title(loc="left")
    assert title == f"epoch 1/8: normal cell α\nmax |p − 1/K| = {spread:.4f}"
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert all(len(t.split(".")[1]) == 4 for t in texts)


def test_decided_alpha_looks_decided_on_the_same_scale(nb201):
    E, K = nb201.alpha_shape
    probs = np.full((E, K), 0.01)
    probs[:, 3] = 0.96  # one op per edge decided
    im = _image(alpha_heatmap(probs, nb201.ops, nb201.edges))
    assert im.norm(1.0 / K) == pytest.approx(0.5)
    assert (im.norm.vmin, im.norm.vmax) == (0.0, 1.0)  # the same ends as any other epoch
    assert im.norm(0.96) > 0.97 and im.norm(0.01) < 0.1
    colours = im.to_rgba(probs)
    assert (colours[:, 3, 0] > colours[:, 3, 2]).all()  # above uniform: red
    assert (colours[:, 0, 2] > colours[:, 0, 0]).all()  # below uniform: blue
    # Independent weights (FairDARTS' σ): white at the given centre, the same fixed ends.
    fig = alpha_heatmap(np.full((E, K), 0.52), nb201.ops, nb201.edges, centre=0.5)
    assert _image(fig).norm(0.5) == pytest.approx(0.5)
    assert fig.axes[0].get_title(loc="left") == "max |w − 0.5| = 0.020"


def test_heatmap_annotations_outlines_and_labels(darts):
    E, K = darts.alpha_shape
    probs = torch.rand(E, K, generator=torch.Generator().manual_seed(0)).softmax(-1)
    chosen = {(0, 4), (5, 3), (11, 6)}
    fig = alpha_heatmap(probs, darts.ops, darts.edges, chosen=chosen, title="t")
    ax = fig.axes[0]
    values = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(ax.texts) == E * K == len(values)
    for (e, o), text in values.items():
        assert text.get_text() == f"{probs[e, o].item():.3f}"
    rects = [p for p in ax.patches if p.get_gid() == CHOSEN_GID]
    assert len(rects) == len(chosen)
    assert {(round(r.get_y() + 0.5), round(r.get_x() + 0.5)) for r in rects} == chosen
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["kept by genotype"]
    assert [t.get_text() for t in ax.get_yticklabels()][:3] == ["0->2", "1->2", "0->3"]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(darts.ops)
    assert "uniform" in fig.axes[1].get_ylabel()  # the colourbar
    with pytest.raises(ValueError, match="shape"):
        alpha_heatmap(probs.T, darts.ops, darts.edges)


def test_chosen_cells_darts_v2(darts):
    g = resolve_genotype("darts_v2")
    cells = chosen_cells(g, darts.edges, darts.ops)
    assert set(cells) == set(darts.cell_types) == {"normal", "reduce"}
    assert all(len(c) == 8 for c in cells.values())
    sep3, skip, dil3 = (
        darts.ops.index(o) for o in ("sep_conv_3x3", "skip_connect", "dil_conv_3x3")
    )
    # normal: nodes 2 and 3 take sep_conv_3x3 from inputs 0, 1 (edges 0..3); node 4 sep from 1
    # (edge 1->4 = 6) and skip from 0 (0->4 = 5); node 5 skip from 0 (0->5 = 9), dil from 2 (2->5 = 11).
    expected = {(0, sep3), (1, sep3), (2, sep3), (3, sep3), (6, sep3), (5, skip), (9, skip)}
    assert cells["normal"] == expected | {(11, dil3)}
    for cell, pairs in (("normal", g.normal), ("reduce", g.reduce)):
        for k, (op, i) in enumerate(pairs):
            assert (darts.edges.index((i, 2 + k // 2)), darts.ops.index(op)) in cells[cell]


def test_chosen_cells_fixed_reduction_nb201_and_skipped_ops(darts, nb201):
    frc = resolve_genotype("gdas_frc")
    assert set(chosen_cells(frc, darts.edges, darts.ops)) == {"normal"}
    g = NB201Genotype.from_text(NB201_ARCH)
    cells = chosen_cells(g, nb201.edges, nb201.ops)
    assert set(cells) == set(nb201.cell_types) == {"cell"}  # the α key of the NB201 space
    conv3, skip = nb201.ops.index("nor_conv_3x3"), nb201.ops.index("skip_connect")
    assert cells["cell"] == {(0, conv3), (1, conv3), (2, conv3), (3, skip), (4, conv3), (5, conv3)}
    without_conv = [op for op in nb201.ops if op != "nor_conv_3x3"]
    assert chosen_cells(g, nb201.edges, without_conv)["cell"] == {(3, skip)}
    with pytest.raises(ValueError, match="not in"):
        chosen_cells(resolve_genotype("darts_v2"), nb201.edges, nb201.ops)


def test_darts_diagram_uses_the_genotypes_node_numbers():
    """Inputs c_{k-2}, c_{k-1} are nodes 0, 1 and the intermediate nodes 2..5, as in the
    genotype, alphas.json and the heatmap's ``i->j`` rows."""
    fig = cell_diagram(resolve_genotype("darts_v2"), "normal")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "0: $c_{k-2}$" in texts and "1: $c_{k-1}$" in texts
    assert {"2", "3", "4", "5"} <= set(texts) and "6" not in texts
    # The node an edge ends at is the node numbered like the genotype's input index.
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    boxes = {t.get_text(): t.get_position() for t in fig.axes[0].texts if t.get_text() in "2345"}
    assert boxes["2"][0] < boxes["3"][0] < boxes["4"][0] < boxes["5"][0]
    assert len(arrows) == 8 + 4  # the kept edges and the concatenation


def test_mbconv_chain_wraps_into_rows_and_draws_skipped_layers_as_skips(tmp_path):
    from supernet.genotypes import MBConvGenotype

    layers = ["k3_e3", "zero", "k5_e6", "k7_e3", "zero"] * 4 + ["k5_e6"]  # 21: imagenet_mobile
    fig = genotype_figures(MBConvGenotype(layers), "epoch 2: ")["layers"]
    ax = fig.axes[0]
    labels = {t.get_text(): t for t in ax.texts if t.get_text().startswith("L")}
    assert len(labels) == len(layers)
    for i, op in enumerate(layers):
        text = f"L{i}: skipped" if op == "zero" else f"L{i}: {op}"
        assert labels[text].get_color() == FAMILIES["skip" if op == "zero" else "conv"][0]
    assert not any("zero" in t for t in labels)
    w, h = fig.get_size_inches() * DPI
    assert w < 2000 and w / h < 3  # rows, not one 3830-px strip
    pixels = _assert_png(save_png(fig, tmp_path / "layers.png"), fig.get_size_inches())
    assert pixels.shape[1] < 2000


def _op_labels(fig) -> list:
    return [t for t in fig.axes[0].texts if t.get_text() in OPS]


def test_cell_diagrams_and_pngs(tmp_path, darts):
    v2 = resolve_genotype("darts_v2")
    figs = genotype_figures(v2, title_prefix="epoch 3: ")
    assert set(figs) == {"normal", "reduce"}
    assert figs["normal"].axes[0].get_title() == "epoch 3: normal cell"
    for cell, fig in figs.items():
        labels = _op_labels(fig)
        assert sorted(t.get_text() for t in labels) == sorted(op for op, _ in getattr(v2, cell))
        for t in labels:  # coloured by family: the skips stand out
            family = {"skip_connect": "skip", "max_pool_3x3": "pool"}.get(t.get_text(), "conv")
            assert t.get_color() == FAMILIES[family][0]
        out = tmp_path / "a" / "b" / f"{cell}.png"
        size = fig.get_size_inches()
        assert save_png(fig, out) == out  # parents created
        _assert_png(out, size)
    assert sorted(p.name for p in out.parent.iterdir()) == ["normal.png", "reduce.png"]  # no temps

    E, K = darts.alpha_shape
    probs = torch.randn(E, K, generator=torch.Generator().manual_seed(1)).softmax(-1)
    fig = alpha_heatmap(probs, darts.ops, darts.edges, {(0, 1)})
    size = fig.get_size_inches()
    _assert_png(save_png(fig, tmp_path / "heatmap.png"), size)
    fig = alpha_heatmap(np.eye(6, 5), list("abcde"), darts.edges[:6])
    _assert_png(save_png(fig, tmp_path / "heatmap.png"), (0.78 * 5 + 2.6, 0.36 * 6 + 1.9))


def test_fixed_reduction_and_nb201_diagrams(tmp_path):
    frc = resolve_genotype("gdas_frc")
    figs = genotype_figures(frc)
    assert set(figs) == {"normal"}
    with pytest.raises(ValueError, match="fixed"):
        cell_diagram(frc, "reduce")
    with pytest.raises(ValueError, match="unknown cell type"):
        cell_diagram(frc, "cell")
    size = figs["normal"].get_size_inches()
    _assert_png(save_png(figs["normal"], tmp_path / "frc.png"), size)

    g = NB201Genotype.from_text(NB201_ARCH.replace("nor_conv_3x3~1|+", "none~1|+"))
    figs = genotype_figures(g, "nb201: ")
    assert set(figs) == {"cell"} and figs["cell"].axes[0].get_title() == "nb201: cell"
    ax = figs["cell"].axes[0]
    assert len(_op_labels(figs["cell"])) == 6
    dashed = [p for p in ax.patches if isinstance(p, FancyArrowPatch) and p.get_linestyle() == "--"]
    assert len(dashed) == 1  # the none edge
    size = figs["cell"].get_size_inches()
    _assert_png(save_png(figs["cell"], tmp_path / "nb201.png"), size)


def test_param_free_ops_match_the_zoo_by_hand():
    zoo = json.loads(ZOO_FILE.read_text())
    for name, expected, skips in (("darts_v1", 3 + 8, 3 + 3), ("darts_v2", 2 + 8, 2 + 3)):
        entry = zoo[name]["genotype"]
        by_hand = sum(op in PARAM_FREE_OPS for op, _ in entry["normal"] + entry["reduce"])
        g = resolve_genotype(name)
        assert param_free_ops(g) == by_hand == expected
        assert count_op(g, "skip_connect") == skips
    frc = resolve_genotype("gdas_frc")  # only the searched normal cell counts
    assert param_free_ops(frc) == count_op(frc, "skip_connect") == 5
    assert PARAM_FREE_OPS == {"skip_connect", "max_pool_3x3", "avg_pool_3x3", "zero"}
    nb = NB201Genotype.from_text(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
    )
    assert param_free_ops(nb) == 2  # skip + avg pool; none is not counted
    assert count_op(nb, "none") == 1 and count_op(nb, "nor_conv_3x3") == 3
    assert param_free_ops(NB201Genotype.from_text(NB201_ARCH)) == 1
    # The MobileNet chain: its zero choice (the layer left out) is its parameter-free op.
    from supernet.genotypes import MBConvGenotype

    mb = MBConvGenotype(["k3_e3", "zero", "k5_e6", "zero", "zero"])
    assert param_free_ops(mb) == 3 and count_op(mb, "skip_connect") == 0


def test_wandb_image_takes_the_figures():
    wandb = pytest.importorskip("wandb")
    g = NB201Genotype.from_text(NB201_ARCH)
    fig = genotype_figures(g)["cell"]
    w, h = (fig.get_size_inches() * DPI).round()
    assert wandb.Image(fig).image.size == (w, h)


def test_one_input_feeding_a_node_twice_draws_two_distinct_arrows():
    """GDAS' selection may keep two (op, input) pairs with the same input: both arrows and
    both labels must be visible, not drawn on top of each other."""
    normal = [
        ["sep_conv_3x3", 0],
        ["skip_connect", 0],
        ["sep_conv_3x3", 1],
        ["dil_conv_3x3", 2],
        ["sep_conv_5x5", 0],
        ["sep_conv_3x3", 1],
        ["avg_pool_3x3", 1],
        ["sep_conv_3x3", 1],
    ]
    g = Genotype.from_dict(
        {"space": "darts", "normal": normal, "normal_concat": [2, 3, 4, 5]}
        | {"reduce": normal, "reduce_concat": [2, 3, 4, 5]}
    )
    fig = cell_diagram(g, "normal")
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    first_node = [a for a in arrows if a.get_linewidth() > 1.2][:2]  # c_{k-2} -> node 0, twice
    paths = [a.get_path().vertices for a in first_node]
    assert not np.allclose(paths[0], paths[1])
    assert len(_op_labels(fig)) == 8
