"""Zero-Cost-PT (``selection=pt selection.score=<proxy>``): every decision keeps the op whose
removal lowers the proxy most (and drops the edge whose removal lowers it least), as a direct
computation with the proxy on the wrapped supernet says; the result is a valid genotype written
into α as one-hot rows; a run resumed from a PT checkpoint ends the same; an unknown score is
refused naming the key; under DDP rank 0's proxy value is every rank's."""

from __future__ import annotations

import math
import shutil
from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir

from nas.core import distributed
from nas.estimate.proxies import ProxyInputs, get_proxy
from nas.run import builders
from nas.run.pt_stage import search_stage_config
from nas.run.pt_stage import select as pt_select
from nas.run.schema import register_configs
from nas.run.settings import selection_settings
from nas.search.module import SearchModule
from nas.search.pt_selection import PerturbationSelection, Projection, PTCheckpoint
from nas.search.zero_cost_scoring import FixedMixing, ZeroCostScore, per_edge_copy
from nas.strategies import Strategy
from nas.strategies.arch_grad import FirstOrder
from nas.strategies.samplers import SoftmaxSampler
from supernet.spaces.darts import DartsSpace
from supernet.spaces.nb201 import NB201Space
from tests.helpers.modules import random_batch
from tests.helpers.paths import ROOT

SEED = 3


def make_module(space, seed: int = 0) -> SearchModule:
    torch.manual_seed(seed)
    module = SearchModule(
        space,
        Strategy("t", SoftmaxSampler(), FirstOrder()),
        weight_optimizer=partial(torch.optim.SGD, lr=0.05),
        arch_optimizer=partial(torch.optim.Adam, lr=3e-4),
    )
    with torch.no_grad():  # α away from uniform, so the mixing matters
        for a in module.arch.alphas.values():
            a.normal_(0.0, 1.0)
    return module


def nb201_module() -> SearchModule:
    ops = ("none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3")
    return make_module(NB201Space((3, 8, 8), 5, ops, C=4, layers=1))


def darts_module() -> SearchModule:
    ops = ("none", "skip_connect", "dil_conv_3x3")  # none: never a candidate here
    return make_module(DartsSpace((3, 8, 8), 5, ops, C=4, layers=3, steps=2, multiplier=2))


class ByHand:
    """The proxy of the supernet mixed with given weights, computed directly: one copy of the
    supernet, reloaded from the supernet's state before each score, wrapped, scored."""

    def __init__(self, name: str, module, batches):
        self.name, self.module = name, module
        self.batches = [] if get_proxy(name).data_free else batches
        self.net = per_edge_copy(module.supernet)

    def __call__(self, weights) -> float:
        self.net.load_state_dict(self.module.supernet.state_dict())
        torch.manual_seed(SEED)
        inputs = ProxyInputs(
            model=FixedMixing(self.net, weights).train(),
            input_shape=self.module.space.input_shape,
            num_classes=self.module.space.num_classes,
            batches=self.batches,
            seed=SEED,
        )
        return float(get_proxy(self.name).score(inputs))


def lowest(scores: dict) -> object:
    """The key of the lowest score, the first on ties; nan never (their ``nanargmin``)."""
    finite = {k: v for k, v in scores.items() if not math.isnan(v)}
    return min(finite, key=lambda k: finite[k]) if finite else next(iter(scores))


def highest_later(scores: dict) -> object:
    """The key of the highest score, the later on ties; nan counts as highest."""
    best = None
    for k, v in scores.items():
        v = math.inf if math.isnan(v) else v
        if best is None or v >= best[1]:
            best = (k, v)
    return best[0]


def replay(name: str, module, probs, report, batches) -> None:
    """Remakes every decision of ``report`` in its order, scoring each removal by hand."""
    by_hand = ByHand(name, module, batches)
    space = module.space
    cells = list(module.arch.cell_types)
    label = {f"{i}->{j}": e for e, (i, j) in enumerate(space.edges)}
    proj = Projection({c: {} for c in cells}, {c: set() for c in cells})
    topology = report["topology"]
    names = [o for o in space.ops if not (topology and o == "none")]
    for entry in report["ops"]:
        cell, edge = entry["cell"], label[entry["edge"]]
        scores = {}
        for op in names:
            w = proj.apply(probs)
            w[cell] = w[cell].clone()
            w[cell][edge, space.ops.index(op)] = 0.0
            scores[op] = by_hand(w)
        assert entry["scores"] == pytest.approx(scores, rel=1e-6, nan_ok=True)
        assert entry["op"] == lowest(scores), (entry, scores)
        assert max(entry["drop"], key=entry["drop"].get) == entry["op"]
        proj.ops[cell][edge] = space.ops.index(entry["op"])
    for entry in topology:
        cell = entry["cell"]
        eids = [e for e, (_, j) in enumerate(space.edges) if j == entry["node"]]
        w = proj.apply(probs)
        for r in entry["rounds"]:
            scores = {}
            for e in eids:
                v = {c: t.clone() for c, t in w.items()}
                v[cell][e].zero_()
                scores[f"{space.edges[e][0]}->{space.edges[e][1]}"] = by_hand(v)
            assert r["scores"] == pytest.approx(scores, rel=1e-6, nan_ok=True)
            removed = highest_later(scores)
            assert r["removed"] == removed, (r, scores)
            eids.remove(label[removed])
            w[cell][label[removed]].zero_()
        assert entry["kept"] == [f"{space.edges[e][0]}->{space.edges[e][1]}" for e in eids]
        proj.dropped[cell].update(e for e, (_, j) in enumerate(space.edges)
                                  if j == entry["node"] and e not in eids)  # fmt: skip


def assert_one_hot_architecture(module, report) -> None:
    genotype = module.genotype()
    module.space.validate_genotype(genotype)
    assert report["genotype"] == str(genotype)
    for cell, a in module.arch.alphas.items():
        rows = a.detach()
        assert ((rows == 0) | (rows == 1)).all(), cell
        assert set(rows.sum(1).tolist()) <= {0.0, 1.0}, cell  # one op, or a dropped edge


def run_and_replay(name: str, module) -> dict:
    batches = [random_batch(6, seed=1)]
    with torch.no_grad():
        probs = {c: p.detach().float() for c, p in module.probabilities().items()}
    state = {k: v.clone() for k, v in module.supernet.state_dict().items()}
    selector = PerturbationSelection(tune_epochs=0, seed=SEED, score=name)
    report = selector(module, batches)
    # The proxies ran on copies: the supernet is as it was (synflow would have taken |θ|).
    for k, v in module.supernet.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert report["score"] == name
    assert report["score_batches"] == (0 if get_proxy(name).data_free else 1)
    assert "criterion" not in report and math.isfinite(report["final_score"])
    replay(name, module, probs, report, batches)
    assert_one_hot_architecture(module, report)
    return report


@pytest.mark.parametrize("name", ["nwot", "synflow", "meco"])
def test_each_nb201_edge_keeps_the_op_whose_removal_lowers_the_proxy_most(name):
    report = run_and_replay(name, nb201_module())
    assert len(report["ops"]) == 6 and not report["topology"]
    assert {"none", "skip_connect"} <= set(report["ops"][0]["scores"])  # none is a candidate


def test_darts_ops_and_topology_follow_the_proxy():
    report = run_and_replay("nwot", darts_module())
    assert len(report["ops"]) == 2 * 5 and len(report["topology"]) == 2  # node 3 per cell type
    assert all("none" not in e["scores"] for e in report["ops"])
    assert all(len(t["kept"]) == 2 and len(t["rounds"]) == 1 for t in report["topology"])


def test_the_copy_follows_the_supernet_and_rank_0_decides(monkeypatch):
    module = nb201_module()
    batches = [random_batch(6, seed=1)]
    w = {c: p.detach() for c, p in module.probabilities().items()}
    score = ZeroCostScore("nwot", module.supernet, batches, (3, 8, 8), 5, SEED, module.device)
    by_hand = ByHand("nwot", module, batches)
    first = score(w)
    assert first == pytest.approx(by_hand(w), rel=1e-9)
    # Weights change between decisions (tuning): the next evaluation sees the new ones.
    with torch.no_grad():
        for p in module.supernet.parameters():
            p.mul_(-1.5)
    assert score(w) == pytest.approx(by_hand(w), rel=1e-9)
    assert score(w) != pytest.approx(first, rel=1e-9)

    # Under DDP rank 0 computes and broadcasts; another rank takes rank 0's value.
    sent = []

    def broadcast_(tensors, src=0):
        sent.append(tensors[0].clone())
        if distributed.rank() != 0:
            tensors[0].copy_(torch.tensor([12.5, 0.0], dtype=torch.float64))
        return tensors

    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "broadcast_", broadcast_)
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    assert score(w) == float(sent[-1][0]) and sent[-1][1] == 0.0
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(score, "local", lambda weights: pytest.fail("rank 1 computed"))
    assert score(w) == 12.5


# ---- through the run's config: checkpoint and resume, the refused score --------------------
SMALL = ["search_space.steps=2", "search_space.multiplier=2"]
OPS = ["search_space.ops=[none,skip_connect,dil_conv_3x3]"]
ZC = ["selection=pt", "selection.score=nwot", "selection.tune_epochs=1", "selection.tune_batches=1"]


def config(*extra: str):
    register_configs()
    overrides = ["experiment=smoke", "logger=none", "threads=1", "seed=4", *SMALL, *OPS, *ZC]
    overrides += ["strategy.batch_size=8"]  # 8 images per step and per proxy evaluation
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[*overrides, *extra])


def searched(cfg):
    torch.manual_seed(cfg.seed)
    module = builders.search_module(cfg, builders.space_from_config(cfg))
    data = builders.search_data(cfg)
    data.setup()
    return module, data


def test_resume_from_a_checkpoint_after_a_decision_ends_with_the_same_architecture(
    tmp_path, monkeypatch
):
    """The uninterrupted run keeps a copy of its checkpoint right after decision 3 (of 12; a
    tuning epoch between steps); a run resumed from that copy ends where it ended."""
    cfg = config()
    module, data = searched(cfg)
    after_3 = tmp_path / "after_3.ckpt"
    save = PTCheckpoint.save

    def keeping_save(self, progress):
        save(self, progress)
        if progress["decisions"] == 3 and progress["tuned"] == 0:
            shutil.copy(self.path, after_3)

    monkeypatch.setattr(PTCheckpoint, "save", keeping_save)
    full = pt_select(cfg, module, data, tmp_path / "full")
    monkeypatch.setattr(PTCheckpoint, "save", save)
    assert full["score"] == "nwot" and full["tune_epochs"] == 1
    assert_one_hot_architecture(module, full)

    cfg = config(f"resume={after_3}")
    module, data = searched(cfg)
    resumed = pt_select(cfg, module, data, tmp_path / "resumed")
    assert resumed["genotype"] == full["genotype"] == str(module.genotype())
    assert resumed == full  # every proxy value of every decision too


def test_an_unknown_score_is_refused_naming_the_key_and_the_choices():
    cfg = config("selection.score=accuracy")
    for check in (selection_settings, search_stage_config):  # the latter: before the search
        with pytest.raises(ValueError) as err:
            check(cfg)
        message = str(err.value)
        assert message.startswith("selection.score: unknown score 'accuracy'.")
        assert "val_acc" in message and "nwot" in message and "synflow" in message
        assert "\n" not in message
    with pytest.raises(ValueError, match="selection.score: unknown score 'x'"):
        PerturbationSelection(score="x")
    assert selection_settings(config("selection.score=meco")).score == "meco"
