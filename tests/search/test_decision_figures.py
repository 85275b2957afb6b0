"""Figures of a ``module`` space: α per decision (each row its own choices, coloured on its own
uniform, padding masked) and the genotype as a list of decisions; a run draws both."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from nas.search.figures import (
    CHOSEN_GID,
    DPI,
    PADDING_GID,
    cell_diagram,
    chosen_cells,
    decision_heatmap,
    decision_list,
    genotype_figures,
    save_png,
)
from nas.search.report import draw_figures
from supernet.spaces import build_space
from tests.helpers.runs import read_summary, run_train_unlogged

MODEL = "examples.own_model.SmallCNN"


@pytest.fixture(scope="module")
def space():
    return build_space("module", (1, 8, 8), 10, model=MODEL)


def _probs(space, logits: torch.Tensor) -> torch.Tensor:
    """Softmax over each row's real columns, exactly 0 on padding (as the strategies' are)."""
    mask = space.column_masks()["decisions"]
    return logits.masked_fill(~mask, float("-inf")).softmax(-1)


def _random_probs(space, seed: int = 0) -> torch.Tensor:
    shape = space.column_masks()["decisions"].shape
    return _probs(space, 2 * torch.randn(shape, generator=torch.Generator().manual_seed(seed)))


def _heatmap(space, probs, **kwargs):
    rows, names = space.alpha_labels("decisions")
    genotype = space.genotype_of(probs.argmax(-1).tolist())
    chosen = chosen_cells(genotype, space.edges, space.ops)["decisions"]
    return decision_heatmap(probs, rows, names, chosen, **kwargs), genotype, chosen


def _extents(fig, artists) -> list:
    renderer = FigureCanvasAgg(fig).get_renderer()
    return [a.get_window_extent(renderer) for a in artists]


def _assert_png(path, fig_size_inches) -> None:
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    w, h = (np.asarray(fig_size_inches) * DPI).round()
    assert abs(pixels.shape[1] - w) <= 1 and abs(pixels.shape[0] - h) <= 1
    assert pixels.std() > 20


def test_padding_is_masked_and_every_uniform_row_is_white(space):
    mask = space.column_masks()["decisions"].numpy()
    assert not mask.all()  # SmallCNN's decisions have 3, 2, 3 and 2 choices
    probs = _probs(space, torch.zeros(mask.shape))
    fig, _, _ = _heatmap(space, probs, title="epoch 1/1: α per decision")
    im = fig.axes[0].images[0]
    data = im.get_array()
    assert np.array_equal(np.ma.getmaskarray(data), ~mask)  # masked exactly at padding
    assert np.allclose(im.norm(data[mask]), 0.5)  # white, whatever the row's n
    assert fig.axes[0].get_title(loc="left") == "epoch 1/1: α per decision\nmax |p − 1/n| = 0.0000"
    padding = [p for p in fig.axes[0].patches if p.get_gid() == PADDING_GID]
    assert sorted((round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in padding) == sorted(
        map(tuple, np.argwhere(~mask).tolist())
    )
    assert "1/n" in fig.axes[1].get_ylabel()  # the colourbar states the encoding
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["0", "1/n", "1"]


def test_a_decided_row_is_equally_saturated_whatever_its_number_of_choices(space):
    mask = space.column_masks()["decisions"]
    probs = _probs(space, torch.where(torch.arange(mask.shape[1]) == 1, 30.0, 0.0).expand(
        mask.shape
    ))  # fmt: skip
    im = _heatmap(space, probs)[0].axes[0].images[0]
    scaled = im.norm(im.get_array())
    assert np.allclose(scaled[:, 1], 1.0)  # 2-choice and 3-choice rows alike
    assert np.allclose(scaled[:, 0], 0.0)
    half = _probs(space, torch.zeros(mask.shape)) * 0.5  # half of 1/n: halfway to blue
    im = decision_heatmap(half, *space.alpha_labels("decisions")).axes[0].images[0]
    assert np.allclose(im.norm(im.get_array()[mask.numpy()]), 0.25)


def test_annotations_outlines_and_labels(space):
    probs = _random_probs(space)
    rows, names = space.alpha_labels("decisions")
    fig, genotype, chosen = _heatmap(space, probs, title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == rows
    assert ax.get_xticks().size == 0  # column positions mean nothing across decisions
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    real = {(r, c) for r, row in enumerate(names) for c in range(len(row))}
    assert set(texts) == real  # no text on padding
    for (r, c), text in texts.items():
        assert text.get_text() == f"{names[r][c]}\n{probs[r, c].item():.3f}"
    outlined = [p for p in ax.patches if p.get_gid() == CHOSEN_GID]
    assert len(outlined) == len(rows) == len(genotype.choices)
    cells = {(round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in outlined}
    assert cells == set(chosen) == set(enumerate(genotype.columns()))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["chosen"]
    # Every annotation fits its cell.
    renderer = FigureCanvasAgg(fig).get_renderer()
    cell_w = ax.get_window_extent(renderer).width / probs.shape[1]
    assert all(e.width < cell_w for e in _extents(fig, ax.texts))
    with pytest.raises(ValueError, match="shape"):
        decision_heatmap(probs[:, :1], rows, names)


def test_independent_weights_are_centred_on_the_neutral_value(space):
    mask = space.column_masks()["decisions"]
    weights = torch.full(mask.shape, 0.5).masked_fill(~mask, 0.0)
    weights[2, 2] = 0.75
    fig = decision_heatmap(weights, *space.alpha_labels("decisions"), centre=0.5)
    im = fig.axes[0].images[0]
    scaled = im.norm(im.get_array())
    assert np.ma.getmaskarray(scaled).sum() == (~mask).sum()
    assert scaled[0, 0] == pytest.approx(0.5) and scaled[2, 2] == pytest.approx(0.75)
    assert fig.axes[0].get_title(loc="left") == "max |w − 0.5| = 0.250"
    assert "white 0.5" in fig.axes[1].get_ylabel()


def test_the_genotype_diagram_lists_each_decision_and_its_options(space, tmp_path):
    probs = _random_probs(space, seed=1)
    genotype = space.genotype_of(probs.argmax(-1).tolist())
    figs = genotype_figures(genotype, title_prefix="final: ")
    assert set(figs) == {"decisions"}
    fig = figs["decisions"]
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[0] == "final: decisions"
    rows, names = space.alpha_labels("decisions")
    for label, column, options in zip(rows, genotype.columns(), names, strict=True):
        at = texts.index(f"{label}:")
        assert texts[at + 1] == options[column]  # "label: chosen"
        assert texts[at + 2 : at + 2 + len(options)] == options  # then every option
    boxes = [p for p in fig.axes[0].patches if p.get_gid() == CHOSEN_GID]
    assert len(boxes) == len(rows)  # one highlighted option per decision
    # Nothing overlaps: no two texts, and each option's text inside its own box.
    spans = _extents(fig, fig.axes[0].texts)
    for a, b in itertools.combinations(spans, 2):
        assert not a.overlaps(b)
    assert all(0 <= s.x0 and s.x1 <= fig.bbox.width for s in spans)
    out = save_png(fig, tmp_path / "cell.png")
    _assert_png(out, fig.get_size_inches())
    assert cell_diagram(genotype, "decisions").get_size_inches()[1] == pytest.approx(
        fig.get_size_inches()[1] - 0.3
    )  # no title: less height; one line per decision


def test_the_list_wraps_long_options_and_grows_with_the_decisions():
    options = [f"candidate_{k}_with_a_long_name" for k in range(12)]
    few = decision_list([("op", options[3], options)])
    more = decision_list([("op", options[3], options)] * 3 + [("width", "32", ["16", "32"])])
    assert few.get_size_inches()[0] <= 11.0 + 1e-9  # wrapped, not wider than the limit
    assert more.get_size_inches()[1] > few.get_size_inches()[1]
    spans = _extents(more, more.axes[0].texts)
    for a, b in itertools.combinations(spans, 2):
        assert not a.overlaps(b)
    texts = [t.get_text() for t in few.axes[0].texts]
    shown = texts[texts.index("op:") + 2 :]  # the options, shortened to where they differ
    assert len(shown) == len(set(shown)) == 12 and shown[3] == "…e_3_with_a_long_…"
    assert texts[texts.index("op:") + 1] == shown[3]  # the chosen one
    assert len([p for p in more.axes[0].patches if p.get_gid() == CHOSEN_GID]) == 4


def test_draw_figures_uses_the_spaces_labels(space, tmp_path):
    from nas.core.arch import ArchParams

    probs = {"decisions": _random_probs(space)}
    genotype = space.genotype_of(probs["decisions"].argmax(-1).tolist())
    arch = ArchParams(space)
    paths = draw_figures(probs, arch, genotype, tmp_path, "final", labels=space.alpha_labels)
    assert sorted(paths) == ["alpha_decisions", "cell_decisions"]
    assert [p.name for p in paths.values()] == ["alpha_decisions.png", "cell_decisions.png"]


def test_a_module_search_writes_its_figures(monkeypatch, tmp_path):
    code = run_train_unlogged(
        monkeypatch, tmp_path, "search_space=module", "logger.final_figures=true"
    )
    assert code == 0
    for name in ("alpha_decisions", "cell_decisions"):
        path = tmp_path / "figures" / f"{name}.png"
        assert path.is_file(), name
        with Image.open(path) as img:
            assert np.asarray(img.convert("RGB")).std() > 20
    figures = read_summary(tmp_path)["figures"]
    assert sorted(figures) == ["alpha_decisions", "cell_decisions"]
