"""P-DARTS (Chen et al., ICCV 2019): search space approximation (op pruning between stages),
skip dropout, the skip cap of the normal cell, and the progressive-depth stage runner."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch

from nas.run.progressive_depth import STAGE_KEY, STAGES_FILE, StageStamp, prune
from nas.search.module import SearchModule
from nas.strategies import SoftmaxSampler, Strategy
from nas.strategies.arch_grad import FirstOrder
from nas.strategies.modifiers import SkipDropout
from nas.strategies.modifiers.skip_dropout import DroppedSkip, skip_dropout_rate
from nas.strategies.selection import select
from nas.strategies.selection.max_skip import capped_cell
from supernet.spaces.darts import DARTS_OPS, DartsSpace
from supernet.spaces.nb201 import NB201Space
from tests.helpers.runs import run_train

DARTS = DartsSpace((3, 8, 8), 10, C=4, layers=3)
TINY_STAGES = {
    "darts": "[{layers:3,keep:5,skip_dropout:0.1},{layers:4,keep:3,skip_dropout:0.4},"
    "{layers:5,skip_dropout:0.7}]",
    "nb201": "[{layers:1,keep:3,skip_dropout:0.1},{layers:2,keep:2,skip_dropout:0.4},"
    "{layers:3,skip_dropout:0.7}]",
}


# --- search space approximation -------------------------------------------------------------


def test_pruning_keeps_the_configured_ops_per_edge_stage_after_stage():
    g = torch.Generator().manual_seed(0)
    probs = {c: torch.rand(14, 8, generator=g).softmax(-1) for c in ("normal", "reduce")}
    probs["normal"][:, 0] = 1.0  # `none` strongest everywhere: get_min_k keeps it
    masks = prune(probs, {}, 5, DARTS_OPS)
    for cell, m in masks.items():
        assert m.shape == (14, 8) and (m.sum(-1) == 5).all()
        # The kept ops are the 5 strongest of each edge.
        worst_kept = probs[cell].masked_fill(~m, 2.0).min(-1).values
        best_dropped = probs[cell].masked_fill(m, -1.0).max(-1).values
        assert (worst_kept >= best_dropped).all()
    assert masks["normal"][:, 0].all()
    later = prune(probs, masks, 3, DARTS_OPS)
    assert all((later[c].sum(-1) == 3).all() and (later[c] <= masks[c]).all() for c in later)
    # get_min_k_no_zero: `none` goes first, whatever its weight.
    no_none = prune(probs, masks, 3, DARTS_OPS, drop_none=True)
    assert not no_none["normal"][:, 0].any() and (no_none["normal"].sum(-1) == 3).all()
    with pytest.raises(ValueError, match="cannot keep 4"):
        prune(probs, later, 4, DARTS_OPS)


# --- the skip cap ---------------------------------------------------------------------------


def skip_heavy_probs() -> dict[str, torch.Tensor]:
    """DARTS' rule picks skips on edges 0, 1, 2, 5 (weights 0.9, 0.8, 0.7, 0.6) of both cells;
    every edge's next best op is sep_conv_3x3 (0.3)."""
    W = torch.full((14, 8), 0.01)
    W[:, DARTS_OPS.index("sep_conv_3x3")] = 0.3
    for e, w in zip((0, 1, 2, 5), (0.9, 0.8, 0.7, 0.6)):
        W[e, DARTS_OPS.index("skip_connect")] = w
    return {"normal": W, "reduce": W.clone()}


def test_skip_cap_keeps_the_two_strongest_skips_of_the_normal_cell():
    probs = skip_heavy_probs()
    plain = select("darts_top2", probs, DARTS)
    assert sum(op == "skip_connect" for op, _ in plain.normal) == 4
    capped = select("darts_top2_max_skip", probs, DARTS)
    skips = [(op, i) for op, i in capped.normal if op == "skip_connect"]
    assert skips == [("skip_connect", 0), ("skip_connect", 1)]  # node 2's, the strongest
    assert capped.reduce == plain.reduce  # the reduction cell is not capped
    assert all(op != "none" for op, _ in capped.normal + capped.reduce)
    assert capped_cell(probs["normal"], DARTS_OPS, DARTS.edges, max_skip=0)[0][0] != "skip_connect"
    uncapped = capped_cell(probs["normal"], DARTS_OPS, DARTS.edges, max_skip=8)
    assert [tuple(p) for p in uncapped] == [tuple(p) for p in plain.normal]


def test_skip_cap_does_not_apply_in_nb201():
    space = NB201Space((3, 8, 8), 10, C=4, layers=1)
    probs = {"cell": torch.rand(6, 5, generator=torch.Generator().manual_seed(0))}
    assert select("darts_top2_max_skip", probs, space) == select("argmax_per_edge", probs, space)


# --- skip dropout ---------------------------------------------------------------------------


def test_skip_dropout_schedule_follows_the_official_formula():
    assert skip_dropout_rate(0.7, 0, 25, 10, 0.2) == pytest.approx(0.7 * 24 / 25)
    assert skip_dropout_rate(0.7, 9, 25, 10, 0.2) == pytest.approx(0.7 * 15 / 25)
    assert skip_dropout_rate(0.7, 10, 25, 10, 0.2) == pytest.approx(0.7)
    assert skip_dropout_rate(0.7, 14, 25, 10, 0.2) == pytest.approx(0.7 * torch.e**-0.8)


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_skip_dropout_drops_skip_outputs_in_training_only(space):
    torch.manual_seed(0)
    sp = DARTS if space == "darts" else NB201Space((3, 8, 8), 10, C=4, layers=1)
    strategy = Strategy("t", SoftmaxSampler(), FirstOrder(), modifiers=[SkipDropout(rate=0.5)])
    module = SearchModule(
        sp, strategy, partial(torch.optim.SGD, lr=0.1), partial(torch.optim.Adam, lr=1e-3)
    )
    x = torch.randn(2, 3, 8, 8)
    module.eval()
    before = module.supernet(x, strategy.mixing(module.arch.as_dict()).weights)
    module.arch_start_epoch = 0
    strategy.on_epoch_start(0, 10, module)  # past the warm-up: the full rate
    wrappers = [m for m in module.supernet.modules() if isinstance(m, DroppedSkip)]
    assert wrappers and all(w.p == pytest.approx(0.5) for w in wrappers)
    after = module.supernet(x, strategy.mixing(module.arch.as_dict()).weights)
    torch.testing.assert_close(after, before)  # eval: no dropout
    big = torch.ones(200_000)
    wrappers[0].train()
    y = wrappers[0](big)
    assert (y == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert set(y.unique().tolist()) <= {0.0, 2.0}  # kept values scaled by 1 / (1 - p)
    wrappers[0].eval()
    assert torch.equal(wrappers[0](big), big)
    # Training mode, edges grouped or not: every skip goes through its dropout.
    calls = []
    for w in wrappers:
        w.register_forward_hook(lambda *_: calls.append(1))
    module.train()
    module.supernet(x, strategy.mixing(module.arch.as_dict()).weights)
    assert len(calls) == len(wrappers)


# --- the stage runner -----------------------------------------------------------------------


def test_a_checkpoint_of_another_stage_is_refused():
    stamp, ckpt = StageStamp(2, 3, 17), {}
    StageStamp(1, 3, 11).on_save_checkpoint(None, None, ckpt)
    with pytest.raises(ValueError, match="stage 1, not of stage 2"):
        stamp.on_load_checkpoint(None, None, ckpt)


def stage_layers(run_dir: Path) -> list[int]:
    """Per stage checkpoint: (stamped layers, cells (+ NB201's reductions) in its state dict)."""
    out = []
    for i in range(3):
        ckpt = torch.load(
            run_dir / "checkpoints" / "search" / f"stage{i}" / "last.ckpt", weights_only=False
        )
        prefix = ("supernet.cells.", "supernet.layers.")  # darts, nb201
        cells = {k.split(".")[2] for k in ckpt["state_dict"] if k.startswith(prefix)}
        assert ckpt[STAGE_KEY]["stage"] == i
        out.append((ckpt[STAGE_KEY]["layers"], len(cells)))
    return out


# darts: 16 s of the default suite; nb201 runs the same stages by default
@pytest.mark.parametrize("space", [pytest.param("darts", marks=pytest.mark.slow), "nb201"])
def test_stages_grow_in_depth_and_discretize_agrees(space, tmp_path, monkeypatch):
    common = [
        f"search_space={space}",
        "strategy=pdarts",
        "data=synthetic",
        "data.num_samples=32",
        "trainer.limit_train_batches=1",
        f"strategy.stages={TINY_STAGES[space]}",
    ]
    run = tmp_path / "s"
    assert run_train(monkeypatch, run, "stage=search", *common, logger="none") == 0
    n_ops = 8 if space == "darts" else 5
    if space == "darts":
        assert stage_layers(run) == [(3, 3), (4, 4), (5, 5)]
    else:  # N cells per stage, 3 stages, 2 residual reductions
        assert stage_layers(run) == [(1, 5), (2, 8), (3, 11)]
    done = json.loads((run / STAGES_FILE).read_text())["completed"]
    keep = [5, 3] if space == "darts" else [3, 2]
    assert [d["stage"] for d in done] == [0, 1]
    for d, k in zip(done, keep):
        assert all((torch.tensor(m).sum(-1) == k).all() for m in d["masks"].values())
    alphas = json.loads((run / "alphas.json").read_text())
    assert alphas["op_masks"] == done[-1]["masks"]
    if space == "darts":  # every chosen op was still kept on its edge in the last stage
        genotype = json.loads((run / "genotype.json").read_text())
        for cell in ("normal", "reduce"):
            mask, nodes = alphas["op_masks"][cell], [n for n in range(2, 6) for _ in (0, 1)]
            for (op, inp), node in zip(genotype[cell], nodes):
                assert op != "none" and mask[DARTS.edges.index((inp, node))][DARTS_OPS.index(op)]
    disc = tmp_path / "d"
    args = ["stage=discretize", f"alphas={run / 'alphas.json'}", *common]
    assert run_train(monkeypatch, disc, *args, logger="none") == 0
    assert (disc / "genotype.json").read_text() == (run / "genotype.json").read_text()
    assert len(alphas["ops"]) == n_ops
    if space == "darts":  # resume=auto: finished stages skipped, the last one from its ckpt
        (run / "genotype.json").unlink()
        assert (
            run_train(monkeypatch, run, "stage=search", "resume=auto", *common, logger="none") == 0
        )
        assert (disc / "genotype.json").read_text() == (run / "genotype.json").read_text()
