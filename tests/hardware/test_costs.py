"""Cost tables, latency tables, hardware-cost penalties and hard constraints (nas/hardware/costs.py,
nas/hardware/latency.py, nas/strategies/regularizers/hardware_cost.py, nas/hardware/constraint.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nas.hardware.constraint import ConstraintError, allowed_ops, enforce
from nas.hardware.costs import (
    LatencyTableError,
    genotype_choices,
    row_probabilities,
    space_cost_model,
)
from nas.hardware.latency import attach, measure, save_table
from nas.hardware.profile import count_macs, count_params
from nas.strategies.regularizers import HardwareCost
from nas.strategies.selection import select
from supernet.spaces import build_space

# Tiny sizes of each space (8x8 inputs: every stride still applies).
SIZES = {
    "mbconv": {"C": 8, "layers": 1},
    "nb201": {"C": 4, "layers": 1},
    "darts": {"C": 4, "layers": 3},
}
SHAPE = (3, 8, 8)


@pytest.fixture(scope="module", params=sorted(SIZES))
def space_and_model(request):
    space = build_space(request.param, SHAPE, 10, **SIZES[request.param])
    cm = space_cost_model(space)
    # A synthetic latency table: every entry 1 + its index (so sums are checkable).
    keys = [s.key for s in cm.op_shapes()] + [cm.fixed_key]
    cm.set_latency({k: 1.0 + i for i, k in enumerate(keys)})
    return space, cm


def random_genotype(space, seed: int):
    g = torch.Generator().manual_seed(seed)
    alphas = {c: torch.randn(space.alpha_shape, generator=g) for c in space.cell_types}
    return select(space.default_selection, row_probabilities(alphas), space)


def one_hot(space, genotype) -> dict[str, torch.Tensor]:
    p = {c: torch.zeros(space.alpha_shape, dtype=torch.float64) for c in space.cell_types}
    for c in genotype_choices(space, genotype):
        p[c.cell][c.row, space.ops.index(c.op)] += 1.0
    return p


def test_expected_cost_at_a_one_hot_alpha_is_the_child_networks(space_and_model):
    space, cm = space_and_model
    for seed in range(2):
        genotype = random_genotype(space, seed)
        child = space.build_child(genotype, C=space.C, layers=space.layers, auxiliary=False)
        p = one_hot(space, genotype)
        assert float(cm.expected(p, "params")) == count_params(child)
        assert float(cm.expected(p, "macs")) == count_macs(child, list(SHAPE))
        # latency: the table entries of the chosen ops plus the fixed part, by construction
        entries = cm.latency[cm.fixed_key]
        for c in genotype_choices(space, genotype):
            k = space.ops.index(c.op)
            entries += sum(cm.latency[s.key] for s in cm.rows[c.cell][c.row][k] if not s.free)
        assert float(cm.expected(p, "latency")) == pytest.approx(entries)
        assert cm.genotype_cost(space, genotype, "latency") == pytest.approx(entries)


@pytest.mark.parametrize("kind", ["params", "macs", "latency"])
def test_raising_a_costly_ops_alpha_raises_the_expected_cost(space_and_model, kind):
    space, cm = space_and_model
    cell = space.cell_types[0]
    table = cm.table(kind)[cell]
    row = int(table.max(dim=1).values.argmax())
    op = int(table[row].argmax())
    a = {c: torch.zeros(space.alpha_shape, dtype=torch.float64) for c in space.cell_types}
    low = cm.expected(row_probabilities(a), kind)
    a[cell][row, op] = 2.0
    assert cm.expected(row_probabilities(a), kind) > low


def test_latency_table_round_trip_and_errors(tmp_path):
    space = build_space("nb201", SHAPE, 10, **SIZES["nb201"])
    cm = space_cost_model(space)
    entries = measure([cm], "cpu", batch=1, repeats=1, warmup=0)
    assert len(entries) == len(cm.op_shapes()) + 1 and all(v >= 0 for v in entries.values())
    path = save_table(tmp_path / "t.json", entries, ["nb201"], "cpu", 1, 1, 0)
    data = json.loads(path.read_text())
    assert {"device", "torch", "batch", "threads", "table"} <= data.keys()
    assert attach(space_cost_model(space), path).latency == pytest.approx(entries)

    with pytest.raises(LatencyTableError, match="does not exist"):
        attach(cm, tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"table": 3}')
    with pytest.raises(LatencyTableError, match="malformed"):
        attach(cm, tmp_path / "bad.json")
    other = build_space("mbconv", SHAPE, 10, **SIZES["mbconv"])
    with pytest.raises(LatencyTableError, match="not 'mbconv'"):
        attach(space_cost_model(other), path)
    data["table"].pop(cm.op_shapes()[0].key)
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match=cm.op_shapes()[0].key.split("|")[0]):
        attach(cm, tmp_path / "short.json")


@pytest.mark.parametrize("form", ["additive", "multiplicative", "fbnet"])
def test_penalty_forms_value_and_gradient(form):
    space = build_space("mbconv", SHAPE, 10, **SIZES["mbconv"])
    reg = HardwareCost(kind="macs", form=form, weight=0.2, beta=0.6, target=1e4)
    reg.setup(space=space)
    alpha = torch.zeros(space.alpha_shape, dtype=torch.float64, requires_grad=True)
    ce = torch.tensor(2.0, dtype=torch.float64)
    out = reg.combine(ce, {"layers": alpha})
    e = reg.cost_model.expected(row_probabilities({"layers": alpha.detach()}), "macs")
    expected = {
        "additive": 2.0 + 0.2 * e / 1e4,
        "multiplicative": 0.2 * 2.0 * (math.log(e) / math.log(1e4)) ** 0.6,
        "fbnet": 0.2 * 2.0 * math.log(e) ** 0.6,
    }[form]
    assert float(out.detach()) == pytest.approx(float(expected))
    (grad,) = torch.autograd.grad(out, alpha)
    table = reg.cost_model.table("macs")["layers"]
    # more α on a row's costliest op raises the objective, on its cheapest op lowers it
    row = 1 if table.shape[0] > 1 else 0
    assert grad[row, table[row].argmax()] > 0 > grad[row, table[row].argmin()]


def test_a_latency_table_timed_at_setup_travels_in_the_checkpoint(monkeypatch):
    """Two setups time different tables (machine noise); loading the first's state gives the
    second the first's prices, as a resumed run needs."""
    space = build_space("mbconv", SHAPE, 10, **SIZES["mbconv"])
    timings = iter(range(1, 10_000))
    monkeypatch.setattr(
        "nas.hardware.latency.measure_latency", lambda *a: {"latency_ms": float(next(timings))}
    )
    first, second = HardwareCost(kind="latency"), HardwareCost(kind="latency")
    first.setup(space=space)
    second.setup(space=space)
    assert first.cost_model.latency != second.cost_model.latency
    second.load_state_dict(first.state_dict())
    assert second.cost_model.latency == first.cost_model.latency
    # A table from a file is the run's config, not state.
    assert HardwareCost(kind="macs").state_dict() == {}


def test_pruned_ops_are_excluded_from_the_expectation():
    space = build_space("mbconv", SHAPE, 10, **SIZES["mbconv"])
    reg = HardwareCost(kind="params", form="additive", weight=1.0)
    reg.setup(space=space)
    a = {"layers": torch.zeros(space.alpha_shape)}
    mask = torch.zeros(space.alpha_shape, dtype=torch.bool)
    mask[:, 0] = True  # only k3_e3 left
    out = reg.combine(torch.tensor(0.0), a, {"layers": mask})
    only = {"layers": mask.double()}
    assert float(out) == pytest.approx(float(reg.cost_model.expected(only, "params")))


def test_constraint_downgrades_until_the_target_holds(space_and_model):
    space, cm = space_and_model
    probs = row_probabilities({c: torch.randn(space.alpha_shape) for c in space.cell_types})
    genotype = random_genotype(space, 3)
    choices = genotype_choices(space, genotype)
    before = cm.genotype_cost(space, genotype, "macs")
    table = cm.table("macs")
    cheapest = cm.fixed("macs") + sum(
        min(float(table[c.cell][c.row, o]) for o in allowed_ops(space, c.row)) for c in choices
    )
    if cheapest == before:
        pytest.skip("the random genotype is already the cheapest")
    target = (cheapest + before) / 2
    found, report = enforce(space, genotype, probs, cm, {"macs": target})
    space.validate_genotype(found)
    assert report["met"] and report["after"]["macs"] <= target < report["before"]["macs"]
    assert cm.genotype_cost(space, found, "macs") == report["after"]["macs"]
    with pytest.raises(ConstraintError, match=r"constraint\.macs=.*cheapest"):
        enforce(space, genotype, probs, cm, {"macs": cheapest / 2})


def test_constraint_is_met_in_a_search_and_reported(tmp_path, monkeypatch):
    """A tiny mbconv search with a MACs target below what it finds unconstrained."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import train
    from nas.run import builders
    from tests.helpers.runs import run_train

    overrides = ["search_space=mbconv", "data=synthetic", "data.num_samples=64"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(train.CONFIG_DIR, version_base="1.3", job_name="train"):
        cfg = compose("config", overrides=["experiment=smoke", *overrides])
    space = builders.space_from_config(cfg)
    cm = builders.config_cost_model(cfg, space)
    table = cm.table("macs")["layers"]
    cheapest = cm.fixed("macs") + sum(
        min(float(table[r, o]) for o in allowed_ops(space, r)) for r in range(table.shape[0])
    )
    target = cheapest + 1
    # FBNet's latency penalty, its table timed at setup (here: 1 ms per 1,000 parameters).
    monkeypatch.setattr(
        "nas.hardware.latency.measure_latency",
        lambda net, *a: {"latency_ms": 1.0 + sum(p.numel() for p in net.parameters()) / 1000},
    )
    args = ["stage=search", "strategy=fbnet", *overrides, f"constraint.macs={target}"]
    assert run_train(monkeypatch, tmp_path, *args, logger="none") == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["constraint"]["met"] and summary["macs"] <= target
    assert summary["constraint"]["after"]["macs"] == summary["macs"]
    assert {"params", "macs"} <= summary.keys()
    # The found network's latency from that table: latency_ms until a retrain measures it,
    # latency_ms_table for good.
    assert summary["latency_ms"] == summary["latency_ms_table"] > 1.0
    assert summary["latency"]["model"] == "latency table"


@pytest.mark.slow  # the constraint search above runs the cost model in a search by default
def test_the_search_logs_the_penalised_cost_every_epoch(tmp_path, monkeypatch):
    """What a ProxylessNAS / FBNet user watches: E[latency] under α (what the penalty sees) and
    the argmax architecture's latency, per epoch; a strong additive penalty lowers E[latency]."""
    from tests.helpers.runs import run_train

    monkeypatch.setattr(
        "nas.hardware.latency.measure_latency",
        lambda net, *a: {"latency_ms": 1.0 + sum(p.numel() for p in net.parameters()) / 100},
    )
    args = ["stage=search", "strategy=fbnet", "search_space=mbconv", "data=synthetic",
            "data.num_samples=64", "trainer.max_epochs=3", "strategy.arch_start_epoch=0",
            "strategy.regularizers.0.form=additive", "strategy.regularizers.0.weight=10",
            "strategy.arch_optimizer.lr=0.1"]  # fmt: skip
    assert run_train(monkeypatch, tmp_path, *args, logger="none") == 0
    history = [json.loads(line) for line in (tmp_path / "search_history.jsonl").open()]
    expected = [h["cost/expected_latency"] for h in history]
    assert len(expected) == 3 and all(h["cost/argmax_latency"] > 1.0 for h in history)
    assert expected[0] > expected[1] > expected[2]
