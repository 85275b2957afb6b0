"""Figures of a search epoch: α heatmaps and cell diagrams (matplotlib only, no system binaries).

Pure functions: each returns a ``matplotlib.figure.Figure`` made without pyplot (no GUI
backend whatever the active one, nothing left in pyplot's figure registry; PNGs render through
Agg), which ``wandb.Image`` takes as is and ``save_png`` writes to the run directory.

The heatmap colours each op weight on one fixed scale, the same every epoch: a diverging map
from 0 (full blue) through 1/K (white, uniform) to 1 (full red), so a near-uniform α reads as
a near-white block and only a decided one (a weight near 1, its rivals near 0) is saturated;
the title states the spread, ``max |p - 1/K|``. The cell diagrams use the genotype's node
numbers (inputs ``c_{k-2}``, ``c_{k-1}`` = 0, 1; intermediate nodes 2, 3, ...; the heatmap's
edge labels ``i->j`` are the same numbers) and colour each kept op by family (convolution,
skip, pooling, none), so a collapse to parameter-free ops shows at a glance. A MobileNet
chain is drawn as rows of layers, a skipped layer (``zero``) as a skip.

A ``module`` space's α (one row per decision, rows padded to the longest decision's choices) is a
``decision_heatmap``: each row shows its own choices by name, coloured on its own uniform 1/n,
padding hatched; its genotype's diagram is a ``decision_list``, "label: chosen" and the options.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Rectangle
from matplotlib.textpath import TextPath

from nas.core.genotype import Genotype, GenotypeBase, kept_edges
from nas.core.plots import DPI, save_png  # noqa: F401 - re-exported for the search's figures
from supernet.choices.decision import choice_name

CMAP = "RdBu_r"
SKIPPED_LAYER = "zero"  # a MobileNet chain's choice to leave the layer out (its output = input)
LAYERS_PER_ROW = 6  # a MobileNet chain's diagram wraps after this many layers
CHOSEN_GID = "chosen"  # gid of the outline rectangles, so tests and callers can find them
PADDING_GID = "padding"  # gid of a decision heatmap's hatched padding cells
PADDING_COLOUR = "#e4e4e4"  # a decision heatmap's padding cells (no choice there)
MAX_NAME_CHARS = 18  # longer choice names are shortened in the decision figures
DECISIONS_MAX_WIDTH = 11.0  # inches: a decision list wraps its options past this width
CHOSEN_COLOUR = "#b35806"  # a decision list's chosen option

# Op family -> (colour, line style) of the diagrams' edges.
FAMILIES = {
    "conv": ("#1f5fa8", "-"),
    "skip": ("#d62728", "-"),
    "pool": ("#e08a00", "-"),
    "none": ("#a0a0a0", "--"),
}
NODE_COLOURS = {"input": "#b7e1a1", "intermediate": "#aed3f0", "output": "#fdd49e"}
_CENTRED = {"ha": "center", "va": "center"}
_LABEL_BOX = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.9}


def op_family(op: str) -> str:
    """``"none"``, ``"skip"`` (skip_connect; a MobileNet chain's ``zero``, the layer left
    out), ``"pool"`` (max/avg pools) or ``"conv"``."""
    if op == "none":
        return "none"
    if op in ("skip_connect", SKIPPED_LAYER):
        return "skip"
    return "pool" if "pool" in op else "conv"


def _edge_label(edge: Sequence[int]) -> str:
    return f"{edge[0]}->{edge[1]}"  # the format of nas.search.report.edge_label


def _title_and_legend(ax, title: str, stated: str, chosen: Sequence, outlined: str) -> None:
    """A heatmap's title (the spread on its second line) and the outline's legend entry."""
    ax.set_title(f"{title}\n{stated}" if title else stated, fontsize=9, loc="left")
    if chosen:
        outline = Patch(facecolor="none", edgecolor="black", linewidth=2, label=outlined)
        legend = {"fontsize": 7, "frameon": False, "borderaxespad": 0.2, "handlelength": 1.2}
        ax.legend(handles=[outline], loc="lower right", bbox_to_anchor=(1.0, 1.0), **legend)


def alpha_heatmap(
    probs,
    ops: Sequence[str],
    edges: Sequence[Sequence[int]],
    chosen: Iterable[tuple[int, int]] = (),
    title: str = "",
    centre: float | None = None,
) -> Figure:
    """One cell type's ``[edges, ops]`` weights as an annotated heatmap centred on uniform.

    The colour scale is fixed, not stretched to the data: a ``TwoSlopeNorm`` on the ``RdBu_r``
    map with ``0`` full blue, ``1/K`` white and ``1`` full red (wider only for weights outside
    [0, 1]). A weight within 1e-3 of 1/K (DARTS' first epochs) is therefore near white, and a
    decided edge (one op near 1, the rest near 0) is saturated, so figures of different epochs
    and runs compare by colour. The title ends with the spread, ``max |p - 1/K| = ...``, and
    values are printed with enough decimals to tell them apart (4 while all are within 0.01 of
    1/K).

    Args:
        probs: ``[E, K]`` tensor or array of per-edge op weights (rows need not sum to 1).
        ops: the K op names (columns).
        edges: the E ``(input, node)`` pairs (rows, labelled ``"0->2"``).
        chosen: ``(edge_index, op_index)`` cells the current genotype keeps; each gets a thick
            black outline (see ``chosen_cells``).
        title: the axes title (the spread is added on a second line).
        centre: the white value in place of 1/K, for weights that are not a distribution over
            an edge's ops (FairDARTS' independent σ(α): 0.5, σ(0)).

    Returns:
        The figure; its one image's ``norm(1/K) == 0.5`` (``norm(centre)`` with ``centre``),
        ``norm.vmin == 0`` and ``norm.vmax == 1`` for weights in [0, 1].
    """
    if hasattr(probs, "detach"):
        probs = probs.detach().cpu().double().numpy()
    data = np.asarray(probs, dtype=np.float64)
    E, K = len(edges), len(ops)
    if data.shape != (E, K):
        raise ValueError(f"probs has shape {data.shape}, expected [edges, ops] = {(E, K)}.")
    uniform = 1.0 / K if centre is None else float(centre)
    finite = data[np.isfinite(data)]
    lowest = min(0.0, float(finite.min())) if finite.size else 0.0
    highest = max(1.0, float(finite.max())) if finite.size else 1.0
    norm = TwoSlopeNorm(
        vmin=min(lowest, uniform - 1e-9), vcenter=uniform, vmax=max(highest, uniform + 1e-9)
    )
    spread = float(np.abs(finite - uniform).max()) if finite.size else 0.0
    digits = 4 if spread < 0.01 else 3

    fig = Figure(figsize=(0.78 * K + 2.6, 0.36 * E + 1.9), dpi=DPI)
    ax = fig.subplots()
    im = ax.imshow(data, cmap=CMAP, norm=norm, aspect="auto", interpolation="nearest")
    for e in range(E):
        for o in range(K):
            r, g, b, _ = im.cmap(norm(data[e, o]))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            colour = "white" if dark else "black"
            ax.text(o, e, f"{data[e, o]:.{digits}f}", fontsize=7, color=colour, **_CENTRED)
    chosen = sorted(set(chosen))
    for e, o in chosen:
        box = Rectangle((o - 0.5, e - 0.5), 1, 1, fill=False, ec="black", lw=2.2, gid=CHOSEN_GID)
        ax.add_patch(box).set_clip_on(False)  # the outline of an edge cell is not cut in half
    ax.set_xticks(range(K), list(ops), rotation=35, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(E), [_edge_label(edge) for edge in edges], fontsize=8)
    ax.set_xlabel("op", fontsize=8)
    ax.set_ylabel("edge (input->node)", fontsize=8)
    ax.tick_params(length=0)
    symbol = "p − 1/K" if centre is None else f"w − {uniform:.3g}"
    _title_and_legend(
        ax, title, f"max |{symbol}| = {spread:.{digits}f}", chosen, "kept by genotype"
    )
    bar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03)
    ticks = {norm.vmin, uniform, norm.vmax} | {
        t for t in (0.25, 0.5, 0.75) if norm.vmin < t < norm.vmax
    }
    bar.set_ticks(
        sorted(t for t in ticks if all(abs(t - u) > 0.06 for u in ticks if u != t) or t == uniform)
    )
    white = f"uniform 1/K = {uniform:.3g}" if centre is None else f"neutral {uniform:.3g}"
    bar.set_label(f"weight (white = {white}; blue 0, red 1)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _row_scale(p: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Weights mapped per row onto [0, 1]: 0 -> 0, the row's ``uniform`` -> 0.5, 1 -> 1
    (piecewise linear; weights outside [0, 1] land outside and the colour map clips them)."""
    u = np.broadcast_to(uniform, p.shape)
    below = 0.5 * p / np.maximum(u, 1e-12)
    above = 0.5 + 0.5 * (p - u) / np.maximum(1.0 - u, 1e-12)
    return np.where(p <= u, below, above)


def _shorten(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """``text``, or its start and end around "…" when longer than ``limit`` characters (names
    that share a prefix, such as ``candidate_3x3`` and ``candidate_5x5``, stay apart)."""
    if len(text) <= limit:
        return text
    tail = (limit - 1) // 2
    return text[: limit - 1 - tail] + "…" + text[len(text) - tail :]


def _shorten_all(names: Sequence[str], limit: int = MAX_NAME_CHARS) -> list[str]:
    """One decision's choice names, each shortened (``_shorten``) while they stay distinct;
    where that makes two alike, the part where they differ is kept (a common start and end
    cut off with "…"), and failing that the names are left whole."""
    names = [str(n) for n in names]
    short = [_shorten(n, limit) for n in names]
    if len(set(short)) == len(set(names)):
        return short
    start = len(os.path.commonprefix(names))
    end = len(os.path.commonprefix([n[::-1] for n in names]))
    middle = []
    for n in names:
        lo = max(0, min(start, len(n) - end) - 2)
        text = n[lo:]
        text = ("…" if lo else "") + text
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        middle.append(text)
    return middle if len(set(middle)) == len(set(names)) else names


def decision_heatmap(
    probs,
    rows: Sequence[str],
    names: Sequence[Sequence[str]],
    chosen: Iterable[tuple[int, int]] = (),
    title: str = "",
    centre: float | None = None,
) -> Figure:
    """A ``module`` space's α: one row per decision, each cell its choice's name and weight.

    Decisions have different numbers of choices ``n``, α's rows are padded to the longest; a
    padding column (``r >= len(names[row])``) is no choice: masked (NaN) in the image, drawn
    light grey and hatched, without text. Each row is coloured on its own uniform, as
    ``alpha_heatmap`` colours on 1/K: weight ``0`` full blue, the row's ``1/n`` white, ``1``
    full red (piecewise linear per row; the image holds that position on ``[0, 1]``, so
    ``norm(value) == 0.5`` is white in every row), so a decided 2-choice and a decided
    3-choice decision are equally saturated and an undecided one is white whatever its ``n``.
    With ``centre`` (FairDARTS' independent σ weights) every row is white at ``centre``.

    Args:
        probs: ``[D, K]`` tensor or array of weights (K = the longest decision's choices; the
            values in padding columns are ignored).
        rows: the D decision labels (the y tick labels).
        names: per decision, its choices' names (at most K; a cell shows ``name`` over its
            weight; names longer than ``MAX_NAME_CHARS`` are shortened: ``_shorten_all``).
        chosen: ``(row, column)`` cells the genotype chooses; each gets a thick black outline
            (gid ``CHOSEN_GID``).
        title: the axes title (the spread ``max |p − 1/n|`` is added on a second line).
        centre: the white value for every row in place of its 1/n.

    Raises:
        ValueError: ``probs`` is not ``[len(rows), K]`` with K at least every row's choices.
    """
    if hasattr(probs, "detach"):
        probs = probs.detach().cpu().double().numpy()
    data = np.asarray(probs, dtype=np.float64)
    D = len(rows)
    counts = np.array([len(n) for n in names], dtype=int)
    if len(names) != D or data.ndim != 2 or data.shape[0] != D or data.shape[1] < counts.max():
        raise ValueError(
            f"probs has shape {data.shape}, expected [decisions, choices] = "
            f"[{D}, >= {int(counts.max()) if len(counts) else 0}] ({len(names)} name lists)."
        )
    K = data.shape[1]
    real = np.arange(K)[None, :] < counts[:, None]
    uniform = (1.0 / counts if centre is None else np.full(D, float(centre)))[:, None]
    scaled = np.where(real, _row_scale(data, uniform), np.nan)
    gaps = np.abs(data - uniform)[real & np.isfinite(data)]
    spread = float(gaps.max()) if gaps.size else 0.0
    digits = 4 if spread < 0.01 else 3

    shown = [_shorten_all(row) for row in names]
    widest = max((len(n) for row in shown for n in row), default=1)
    longest_row = max((len(str(r)) for r in rows), default=1)
    cell_w = max(0.8, 0.066 * widest + 0.3)
    width = max(cell_w * K + 0.07 * longest_row + 2.6, 5.6)  # room for the title and legend
    fig = Figure(figsize=(width, max(0.46 * D + 2.0, 3.0)), dpi=DPI)
    ax = fig.subplots()
    cmap = colormaps[CMAP].with_extremes(bad=PADDING_COLOUR)
    norm = TwoSlopeNorm(vmin=0.0, vcenter=0.5, vmax=1.0)
    im = ax.imshow(
        np.ma.masked_invalid(scaled), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest"
    )
    for r in range(D):
        for c in range(K):
            if not real[r, c]:
                box = Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="///", lw=0)
                ax.add_patch(box).set(edgecolor="#b5b5b5", gid=PADDING_GID)
                continue
            red, green, blue, _ = cmap(norm(scaled[r, c]))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            text = f"{shown[r][c]}\n{data[r, c]:.{digits}f}"
            colour = "white" if dark else "black"
            ax.text(c, r, text, fontsize=7, color=colour, linespacing=1.25, **_CENTRED)
    chosen = sorted(set(chosen))
    for r, c in chosen:
        box = Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="black", lw=2.2, gid=CHOSEN_GID)
        ax.add_patch(box).set_clip_on(False)
    ax.set_xticks([])
    ax.set_yticks(range(D), list(rows), fontsize=8)
    ax.set_xlabel("choice (name, weight); hatched: none, the decision has fewer", fontsize=8)
    ax.set_ylabel("decision", fontsize=8)
    ax.tick_params(length=0)
    symbol = "p − 1/n" if centre is None else f"w − {float(centre):.3g}"
    _title_and_legend(ax, title, f"max |{symbol}| = {spread:.{digits}f}", chosen, "chosen")
    bar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03)
    bar.set_ticks([0.0, 0.5, 1.0])
    middle = "1/n" if centre is None else f"{float(centre):.3g}"
    bar.set_ticklabels(["0", middle, "1"])
    if centre is None:
        bar.set_label(
            "weight, per row (n: its choices):\nblue 0, white 1/n (uniform), red 1", fontsize=8
        )
    else:
        bar.set_label(
            f"weight (independent per choice):\nblue 0, white {middle}, red 1", fontsize=8
        )
    bar.ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def chosen_cells(
    genotype: GenotypeBase,
    edges: Sequence[Sequence[int]],
    ops: Sequence[str],
) -> dict[str, set[tuple[int, int]]]:
    """The heatmap cells ``(edge_index, op_index)`` a genotype keeps, per searched cell type.

    Keys are the α keys: ``"normal"``/``"reduce"`` for DARTS (no ``"reduce"`` with a fixed
    reduction cell), ``"cell"`` for NAS-Bench-201. Ops not in ``ops`` are skipped.

    Raises:
        ValueError: a kept edge ``(input, node)`` is not in ``edges`` (another space's genotype).
    """
    index = {tuple(edge): k for k, edge in enumerate(edges)}
    op_index = {op: k for k, op in enumerate(ops)}
    out: dict[str, set[tuple[int, int]]] = {}
    for cell, kept in kept_edges(genotype).items():
        out[cell] = set()
        for op, i, j in kept:
            if (i, j) not in index:
                raise ValueError(f"{cell}: the genotype's edge {i}->{j} is not in {list(index)}.")
            if op in op_index:
                out[cell].add((index[(i, j)], op_index[op]))
    return out


def _bezier(p1: np.ndarray, p2: np.ndarray, rad: float, t: float) -> tuple[np.ndarray, float]:
    """Point and tangent angle (degrees) at ``t`` of matplotlib's ``arc3,rad=rad`` curve.

    Exact in data coordinates only on an equal-aspect axes (arc3 works in display space).
    """
    d = p2 - p1
    c = (p1 + p2) / 2 + rad * np.array([d[1], -d[0]])
    point = (1 - t) ** 2 * p1 + 2 * t * (1 - t) * c + t**2 * p2
    tangent = 2 * (1 - t) * (c - p1) + 2 * t * (p2 - c)
    angle = float(np.degrees(np.arctan2(tangent[1], tangent[0])))
    return point, (angle + 90) % 180 - 90  # keep the text upright


class _Graph:
    """A small DAG on an equal-aspect axes: boxed nodes, arrows clipped to the boxes and bent
    around other nodes, op labels slid along their arrows until they overlap nothing."""

    W, H = 1.5, 0.62  # node box size, data units
    SCALE = 0.62  # inches per data unit; label sizes below assume it (7.5 pt text)

    def __init__(self, positions: dict[object, tuple[float, float]]):
        self.fig = Figure(dpi=DPI)
        self.ax = self.fig.subplots()
        self.ax.set_aspect("equal")
        self.ax.axis("off")
        self.pos = {k: np.array(v, dtype=float) for k, v in positions.items()}
        self.drawn = [np.array(list(self.pos.values()))]  # points to fit in the axes limits
        self.boxes: dict[object, FancyBboxPatch] = {}
        self.labels: list[np.ndarray] = []  # sample points of the placed labels
        self.families: set[str] = set()
        self.routes: dict[tuple, set[float]] = {}  # arcs taken per (src, dst)

    def node(self, key: object, text: str, kind: str) -> None:
        x, y = self.pos[key]
        style = "round,pad=0.02,rounding_size=0.15"
        box = FancyBboxPatch((x - self.W / 2, y - self.H / 2), self.W, self.H, boxstyle=style)
        box.set(facecolor=NODE_COLOURS[kind], edgecolor="#333333", linewidth=1.0, zorder=3)
        self.ax.add_patch(box)
        self.ax.text(x, y, text, fontsize=10, zorder=4, **_CENTRED)
        self.boxes[key] = box

    def _hits(self, pts: np.ndarray, skip: tuple = (), margin: float = 0.12) -> bool:
        """Whether any point lies in a node box (grown by ``margin``) not in ``skip``."""
        w, h = self.W / 2 + margin, self.H / 2 + margin
        return any(
            np.any((abs(pts[:, 0] - p[0]) < w) & (abs(pts[:, 1] - p[1]) < h))
            for k, p in self.pos.items()
            if k not in skip
        )

    def _route(self, src: object, dst: object, side: int, bend: float) -> float:
        """The first arc3 ``rad`` of at least ``bend`` (straight first, then bending to ``side``:
        -1 above for a left-to-right arrow, +1 below, then the other way) whose curve misses
        the other nodes and is not taken yet by another arrow between the same nodes (GDAS'
        selection may feed a node twice from one input, through two ops)."""
        taken = self.routes.setdefault((src, dst), set())
        rads = [s * r for r in (0.0, 0.15, 0.25, 0.35, 0.5, 0.65) for s in (side, -side)]
        free = [r for r in rads if abs(r) >= bend - 1e-9 and r not in taken]
        for rad in free or [side * bend]:
            ts = np.linspace(0.0, 1.0, 41)
            pts = np.array([_bezier(self.pos[src], self.pos[dst], rad, t)[0] for t in ts])
            if not self._hits(pts, skip=(src, dst)):
                self.drawn.append(pts)
                taken.add(rad)
                return rad
        rad = free[0] if free else side * bend
        taken.add(rad)
        return rad

    def edge(
        self,
        src: object,
        dst: object,
        op: str | None,
        side: int = -1,
        bend: float = 0.0,
        label: str | None = None,
    ) -> None:
        """An arrow coloured by ``op``'s family, labelled ``label`` (default: ``op``)."""
        family = op_family(op) if op else None
        colour, style = FAMILIES[family] if family else ("#888888", "-")
        rad = self._route(src, dst, side, bend)
        arrow = FancyArrowPatch(
            tuple(self.pos[src]),
            tuple(self.pos[dst]),
            mutation_scale=11,
            connectionstyle=f"arc3,rad={rad}",
            arrowstyle="-|>",
        )
        arrow.set(linewidth=1.6 if op else 1.0, linestyle=style, color=colour, zorder=2)
        arrow.set(patchA=self.boxes[src], patchB=self.boxes[dst])  # clipped to the boxes
        self.ax.add_patch(arrow)
        if not op:
            return
        self.families.add(family)
        text = op if label is None else label
        # A label is a row of points along its baseline; half length ~ its text width.
        half = 0.047 * len(text) + 0.1
        spots = []
        for t in (0.5, 0.42, 0.58, 0.34, 0.66, 0.27, 0.73):
            (x, y), angle = _bezier(self.pos[src], self.pos[dst], rad, t)
            a = np.radians(angle)
            pts = np.array([x, y]) + np.outer(np.linspace(-half, half, 9), [np.cos(a), np.sin(a)])
            clash = any(np.min(np.hypot(*(pts[:, None] - q[None]).T)) < 0.3 for q in self.labels)
            spots.append((clash or self._hits(pts, margin=0.02), (x, y), angle, pts))
        _, (x, y), angle, pts = min(spots, key=lambda s: s[0])  # first free, else t=0.5
        self.labels.append(pts)
        shown = self.ax.text(x, y, text, fontsize=7.5, color=colour, bbox=_LABEL_BOX, **_CENTRED)
        shown.set(rotation=angle, rotation_mode="anchor", zorder=5)

    def finish(self, title: str) -> Figure:
        handles = [
            Patch(facecolor=c, edgecolor="#333333", label=k) for k, c in NODE_COLOURS.items()
        ]
        handles += [
            Line2D([], [], color=c, linestyle=ls, linewidth=1.6, label=f"{f} op")
            for f, (c, ls) in FAMILIES.items()
            if f in self.families
        ]
        legend = {"fontsize": 7.5, "frameon": False, "handlelength": 1.6, "columnspacing": 1.2}
        where = {"loc": "upper center", "bbox_to_anchor": (0.5, 0.0), "ncol": len(handles)}
        self.ax.legend(handles=handles, **where, **legend)
        if title:
            self.ax.set_title(title, fontsize=10)
        # Limits fit the boxes and arcs; the figure's size follows them at SCALE in/unit.
        pts = np.concatenate(self.drawn)
        (x0, y0), (x1, y1) = pts.min(0) - (self.W, 0.6), pts.max(0) + (self.W, 0.6)
        self.ax.set_xlim(x0, x1)
        self.ax.set_ylim(y0, y1)
        self.fig.set_size_inches(self.SCALE * (x1 - x0) + 0.3, self.SCALE * (y1 - y0) + 0.9)
        self.fig.tight_layout(pad=0.4)
        return self.fig


def cell_diagram(genotype: GenotypeBase, cell_type: str, title: str = "") -> Figure:
    """The kept cell as a graph: nodes as boxes, one arrow per kept edge labelled with its op,
    drawn as the genotype's type says (``GenotypeBase.diagram``, ``DIAGRAMS``).

    DARTS (``two_input_cell``): inputs ``c_{k-2}``, ``c_{k-1}`` (labelled with their genotype numbers 0, 1),
    intermediate nodes 2..steps+1 (the genotype's and the heatmap's numbers) in a row, and the
    output ``c_{k}`` fed (grey arrows) by the concatenated nodes. NAS-Bench-201 (``dag``,
    ``cell_type="cell"``): nodes 0..3, an arrow from every i < j; ``none`` edges are drawn
    dashed and grey (kept, so the cell reads complete). A MobileNet chain (``chain``,
    ``"layers"``): see ``layer_chain``. Op labels and arrows are coloured by family (``op_family``).

    Raises:
        ValueError: an unknown cell type, or ``"reduce"`` of a genotype whose reduction cell is
            fixed (hand-designed, nothing searched to draw).
    """
    kept = kept_edges(genotype)
    if cell_type not in kept:
        if isinstance(genotype, Genotype) and genotype.fixed_reduction and cell_type == "reduce":
            raise ValueError(
                f"the reduction cell is fixed ({genotype.reduce_cell}), not searched; "
                "only the normal cell has a diagram."
            )
        raise ValueError(f"unknown cell type {cell_type!r}; this genotype has {list(kept)}.")
    if genotype.diagram not in DIAGRAMS:
        raise ValueError(
            f"{type(genotype).__name__}.diagram={genotype.diagram!r} has no drawing; "
            f"valid: {', '.join(DIAGRAMS)}."
        )
    return DIAGRAMS[genotype.diagram](genotype, kept[cell_type], cell_type, title)


def _chain(genotype: GenotypeBase, edges, cell_type: str, title: str) -> Figure:
    """A chain of layers (layer i is the edge i -> i + 1): ``layer_chain``."""
    return layer_chain([op for op, _, _ in edges], title)


def _dag(genotype: GenotypeBase, edges, cell_type: str, title: str) -> Figure:
    """Node j sums one op per earlier node: nodes 0..n-1 in a row."""
    n = max(j for _, _, j in edges) + 1
    graph = _Graph({j: (4.0 * j, 0.0) for j in range(n)})
    for j in range(n):
        graph.node(j, str(j), "input" if j == 0 else "output" if j == n - 1 else "intermediate")
    for op, i, j in edges:  # edges that skip nodes arc: from node 0 above, else below
        graph.edge(i, j, op, side=-1 if i == 0 else 1, bend=0.15 * (j - i - 1))
    return graph.finish(title)


def _two_input_cell(genotype: Genotype, edges, cell_type: str, title: str) -> Figure:
    """DARTS' cell: inputs 0, 1, intermediate nodes, the concatenation into ``c_{k}``."""
    steps = len(edges) // 2
    pos = {0: (0.0, 2.2), 1: (0.0, -2.2), "out": (3.4 * (steps + 1), 0.0)}
    graph = _Graph(pos | {2 + n: (3.4 * (n + 1), 0.0) for n in range(steps)})
    graph.node(0, "0: $c_{k-2}$", "input")
    graph.node(1, "1: $c_{k-1}$", "input")
    for n in range(steps):
        graph.node(2 + n, str(2 + n), "intermediate")
    graph.node("out", "$c_{k}$", "output")
    for op, i, j in edges:
        # Edges between intermediates that skip nodes arc above, the longer the higher.
        graph.edge(i, j, op, side=-1, bend=0.15 * (j - i - 1) if i >= 2 else 0.0)
    for node in genotype.cell(cell_type)[1]:
        graph.edge(node, "out", None, side=1)  # the concatenation, below
    return graph.finish(title)


def layer_chain(ops: Sequence[str], title: str = "", per_row: int = LAYERS_PER_ROW) -> Figure:
    """A MobileNet chain of searchable layers, wrapped into rows of ``per_row`` nodes.

    Node ``i`` is the feature map after ``i`` layers (0: the input of the first searchable
    layer, ``len(ops)``: the output of the last); layer ``i`` is the arrow ``i -> i + 1``
    labelled ``L<i>: <op>``. Rows run left to right, then right to left (a snake), so each
    arrow joins neighbours. A skipped layer (``zero``: the layer is left out, its output is
    its input) is drawn as a skip: a red arrow labelled ``L<i>: skipped``.
    """
    n = len(ops) + 1
    per_row = max(1, int(per_row))

    def place(j: int) -> tuple[float, float]:
        row, col = divmod(j, per_row)
        col = col if row % 2 == 0 else per_row - 1 - col
        return 3.6 * col, -2.6 * row

    graph = _Graph({j: place(j) for j in range(n)})
    for j in range(n):
        graph.node(j, str(j), "input" if j == 0 else "output" if j == n - 1 else "intermediate")
    for i, op in enumerate(ops):
        label = f"L{i}: skipped" if op == SKIPPED_LAYER else f"L{i}: {op}"
        graph.edge(i, i + 1, op, label=label)
    return graph.finish(title)


def _text_width(text: str, size: float, bold: bool = False) -> float:
    """The width of ``text`` at ``size`` points, in inches (measured on its glyphs' path)."""
    if not text:
        return 0.0
    prop = FontProperties(size=size, weight="bold" if bold else "normal")
    return TextPath((0, 0), text.replace("$", "S"), prop=prop).get_extents().width / 72.0


def decision_list(
    decisions: Sequence[tuple[str, str, Sequence[str]]],
    title: str = "",
    max_width: float = DECISIONS_MAX_WIDTH,
) -> Figure:
    """A ``module`` genotype as a list: one band per decision, ``label: chosen`` and then its
    options as boxes, the chosen one filled (gid ``CHOSEN_GID``), the others outlined.

    Text is measured and laid out in inches, so nothing overlaps whatever the names' lengths:
    the figure is as wide as the longest line (options wrap onto further lines of the band past
    ``max_width`` inches) and as tall as the bands.

    Args:
        decisions: per decision ``(label, chosen name, option names)`` (options may be empty).
        title: drawn above the list.
    """
    size, line, gap, pad = 9.0, 0.3, 0.12, 0.06  # points; inches
    margin = 0.25
    rows, picked = [], []
    for label, pick, options in decisions:
        options = [str(o) for o in options]
        picked.append(options.index(str(pick)) if str(pick) in options else None)
        shown = _shorten_all(options)
        short_pick = shown[picked[-1]] if picked[-1] is not None else _shorten(str(pick))
        rows.append((_shorten(str(label), 40), short_pick, shown))
    label_w = max([_text_width(f"{r[0]}:", size) for r in rows] + [_text_width("decision", 8)])
    pick_w = max([_text_width(r[1], size, bold=True) for r in rows] + [_text_width("chosen", 8)])
    x_pick = margin + label_w + 0.3
    x_opts = x_pick + pick_w + 0.4
    # Each option box's left edge, wrapping past max_width onto the band's next line.
    placed, right = [], max(x_opts + _text_width("options (filled: chosen)", 8), 1.0)
    right = max(right, margin + _text_width(title, 10))
    for (_, _, options), pick in zip(rows, picked):
        spots, x, y = [], x_opts, 0
        for k, name in enumerate(options):
            w = _text_width(name, size, bold=k == pick) + 2 * pad
            if x > x_opts and x + w > max_width - margin:
                x, y = x_opts, y + 1
            spots.append((x, y, w))
            x += w + gap
            right = max(right, x - gap)
        placed.append((spots, y + 1))
    top = 0.5 if title else 0.2
    height = top + 0.35 + line * sum(n for _, n in placed) + 0.2
    width = right + margin
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # inches from the top
    ax.axis("off")
    if title:
        ax.text(margin, 0.3, title, fontsize=10, va="center", ha="left", parse_math=False)
    y = top + 0.15
    header = {"fontsize": 8, "color": "#666666", "va": "center", "ha": "left"}
    ax.text(margin, y, "decision", **header)
    ax.text(x_pick, y, "chosen", **header)
    ax.text(x_opts, y, "options (filled: chosen)", **header)
    y += 0.2
    text = {"va": "center", "ha": "left", "fontsize": size, "parse_math": False}
    for band_k, ((label, pick, options), (spots, n_lines)) in enumerate(zip(rows, placed)):
        if band_k % 2 == 0:
            band = Rectangle((0.08, y), width - 0.16, line * n_lines, lw=0, fc="#f2f2f2")
            ax.add_patch(band)
        mid = y + line / 2
        ax.text(margin, mid, f"{label}:", **text)
        ax.text(x_pick, mid, pick, fontweight="bold", color=CHOSEN_COLOUR, **text)
        for k, (name, (x, row, w)) in enumerate(zip(options, spots)):
            cy = mid + line * row
            chosen = k == picked[band_k]
            box = FancyBboxPatch(
                (x, cy - 0.1), w, 0.2, boxstyle="round,pad=0,rounding_size=0.05", lw=1.0
            )
            box.set(gid=CHOSEN_GID if chosen else None, zorder=2)
            box.set(fc="#fdd49e" if chosen else "white", ec=CHOSEN_COLOUR if chosen else "#b0b0b0")
            ax.add_patch(box)
            colour = "black" if chosen else "#555555"
            weight = "bold" if chosen else "normal"
            ax.text(x + pad, cy, name, color=colour, fontweight=weight, zorder=3, **text)
        y += line * n_lines
    return fig


def _decisions(genotype: GenotypeBase, edges, cell_type: str, title: str) -> Figure:
    """A ``module`` genotype's decisions: ``decision_list`` of its choices and options."""
    options = dict(getattr(genotype, "options", ()))
    return decision_list(
        [
            (label, choice_name(pick), [choice_name(o) for o in options.get(label, ())])
            for label, pick in genotype.choices
        ],
        title,
    )


# ``GenotypeBase.diagram`` -> the function drawing one cell type of such a genotype.
DIAGRAMS = {
    "two_input_cell": _two_input_cell,
    "dag": _dag,
    "chain": _chain,
    "decisions": _decisions,
}


_CELL_SUFFIX = {"cell": "", "decisions": ""}  # titles "nb201: cell", "final: decisions"


def genotype_figures(genotype: GenotypeBase, title_prefix: str = "") -> dict[str, Figure]:
    """One ``cell_diagram`` per searched cell type, keyed like α (``"normal"``, ``"reduce"``;
    NAS-Bench-201 ``"cell"``; a module genotype's ``"decisions"``); a fixed reduction cell has
    none."""
    return {
        cell: cell_diagram(genotype, cell, f"{title_prefix}{cell}{_CELL_SUFFIX.get(cell, ' cell')}")
        for cell in kept_edges(genotype)
    }
