"""Speed options change speed, not results: bf16 autocast, channels_last, torch.compile."""

from __future__ import annotations

import json
import os
import pickle
import sys

import lightning as L
import pytest
import torch

from nas.strategies.arch_grad import FirstOrder
from tests.helpers.config import compose_cfg
from tests.helpers.modules import random_batch, tiny_search_module
from tests.helpers.runs import run_train

# On the CPU even where a GPU exists: cuDNN picks different algorithms per memory format, so
# only the CPU promises the same search in both formats.
# The paper's α Adam lr (the digits scale raises it to 0.06 for strategy=darts): the bounds
# below are in units of it.
SEARCH = [
    "stage=search", "seed=3", "trainer.limit_train_batches=2", "trainer.accelerator=cpu",
    "strategy.arch_optimizer.lr=3e-4",
]  # fmt: skip


def read_alphas(run_dir) -> dict[str, torch.Tensor]:
    data = json.loads((run_dir / "alphas.json").read_text())["alphas"]
    return {k: torch.tensor(v) for k, v in data.items()}


@pytest.mark.parametrize(
    "strategy",
    ["darts", pytest.param("darts_2nd", marks=pytest.mark.slow)],  # 2nd: +10 s
)
def test_bf16_autocast_pipeline_runs_and_stays_close(strategy, tmp_path, monkeypatch):
    assert run_train(monkeypatch, tmp_path / "fp32", *SEARCH, f"strategy={strategy}") == 0
    args = (*SEARCH, f"strategy={strategy}", "trainer.precision=bf16-mixed")
    assert run_train(monkeypatch, tmp_path / "bf16", *args) == 0
    a, b = read_alphas(tmp_path / "fp32"), read_alphas(tmp_path / "bf16")
    # Adam moves each α by at most ~lr = 3e-4 per step whatever the gradient's size, so where
    # bf16 rounding flips a tiny gradient's sign two runs can differ by 2 x lr per step.
    bound = 2 * 2 * 3e-4 * 1.05
    for k in a:
        assert torch.isfinite(b[k]).all()
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=bound)
    assert run_train(monkeypatch, tmp_path / "rt", "stage=retrain", "genotype=darts_v2",
                     "trainer.precision=bf16-mixed") == 0  # fmt: skip


def test_channels_last_gives_the_same_search(tmp_path, monkeypatch):
    assert run_train(monkeypatch, tmp_path / "nchw", *SEARCH, "channels_last=false") == 0
    assert run_train(monkeypatch, tmp_path / "nhwc", *SEARCH, "channels_last=true") == 0
    a, b = read_alphas(tmp_path / "nchw"), read_alphas(tmp_path / "nhwc")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-8)
    assert (tmp_path / "nchw/genotype.json").read_text() == (
        tmp_path / "nhwc/genotype.json"
    ).read_text()


@pytest.mark.slow
def test_compiled_supernet_matches_eager_and_never_recompiles():
    """Cold compile of even a tiny supernet takes minutes on 2 CPU cores: marked slow."""
    from torch._dynamo.utils import counters

    eager = tiny_search_module(FirstOrder(), seed=4)
    compiled = tiny_search_module(FirstOrder(), seed=4)
    compiled.supernet.compile(dynamic=False)
    counters.clear()
    graphs = []
    for step in range(4):
        x, y = random_batch(seed=step)
        weights = {k: torch.softmax(a.detach(), -1) for k, a in eager.arch.as_dict().items()}
        out_e = eager.supernet(x, weights)
        out_c = compiled.supernet(x, weights)
        torch.testing.assert_close(out_c, out_e, rtol=1e-4, atol=1e-5)
        out_c.square().mean().backward()
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] >= 1
    assert graphs[1:] == [graphs[0]] * 3, f"recompiled after warm-up: {graphs}"


# --- no host synchronisation in the step --------------------------------------------------

HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__")


class StepMarks(L.Callback):
    """Records how many host reads had happened when each training batch started."""

    def __init__(self, reads: list[str]):
        self.reads, self.marks = reads, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.marks.append(len(self.reads))


def _reads_optimizer_step_count() -> bool:
    # Adam's step counter stays on the host even when training on a GPU (torch keeps it on
    # the CPU unless ``capturable``), so reading it is no device sync.
    frame = sys._getframe(2)
    while frame is not None:
        if f"torch{os.sep}optim{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def count_host_reads(monkeypatch) -> list[str]:
    """Counts every tensor → Python read (a device sync on a GPU) from now on."""
    reads: list[str] = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if not _reads_optimizer_step_count():
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


EVERY, STEPS = 5, 20


def reads_per_step(tmp_path, monkeypatch, stage: str, *overrides: str) -> list[int]:
    """Host reads in each of ``STEPS`` training steps of ``stage`` (search or retrain), logging
    and redrawing the progress bar every ``EVERY`` steps."""
    from lightning.pytorch.loggers import CSVLogger

    from nas.core.genotype import resolve_genotype
    from nas.run import builders

    cfg = compose_cfg(
        [
            "experiment=smoke",
            "data=synthetic",
            "data.num_samples=512",
            f"trainer.limit_train_batches={STEPS}",
            f"trainer.log_every_n_steps={EVERY}",
            "trainer.enable_progress_bar=true",
            *overrides,
        ]
    )
    space = builders.space_from_config(cfg)
    if stage == "search":
        module, data = builders.search_module(cfg, space), builders.search_data(cfg)
    else:
        net = builders.child_network(cfg, space, resolve_genotype("darts_v2"))
        module, data = builders.retrain_module(cfg, net), builders.retrain_data(cfg)
    reads = count_host_reads(monkeypatch)
    marks = StepMarks(reads)
    trainer = builders.trainer(
        cfg, tmp_path, stage, CSVLogger(tmp_path), max_epochs=1, callbacks=[marks]
    )
    trainer.fit(module, datamodule=data)
    per_step = [b - a for a, b in zip(marks.marks, marks.marks[1:])]
    assert len(per_step) == STEPS - 1
    return per_step


def assert_reads_only_when_logging(per_step: list[int]) -> None:
    # Only the steps that flush the logs and redraw the bar read values: one in EVERY.
    reading_steps = [i for i, n in enumerate(per_step) if n]
    assert len(reading_steps) <= STEPS // EVERY + 1, (reading_steps, per_step)


# darts_2nd (8.7 s on 2 cores) and drnas run with -m slow: the first order's step shape is theirs.
@pytest.mark.parametrize(
    "strategy",
    ["darts", pytest.param("darts_2nd", marks=pytest.mark.slow), "pcdarts", "snas",
     pytest.param("drnas", marks=pytest.mark.slow)],
)  # fmt: skip
def test_search_steps_read_the_device_only_when_logging(strategy, tmp_path, monkeypatch):
    """Between logging steps a search step reads nothing back to the host: no per-step
    ``.item()`` in the step, the samplers, the regularizers, the guards, the loggers or the
    progress bar. (GDAS, RSWS and SPOS read their sampled ops once per forward pass by
    design: only those ops are computed.)"""
    overrides = [f"strategy={strategy}", "strategy.batch_size=8", "strategy.arch_start_epoch=0"]
    assert_reads_only_when_logging(reads_per_step(tmp_path, monkeypatch, "search", *overrides))


def test_retrain_steps_read_the_device_only_when_logging(tmp_path, monkeypatch):
    per_step = reads_per_step(tmp_path, monkeypatch, "retrain", "retrain.batch_size=8")
    assert_reads_only_when_logging(per_step)


def test_gdas_reads_its_sampled_ops_once_per_forward(tmp_path, monkeypatch):
    """GDAS computes only the sampled ops, so the host must know them: one read per forward
    pass for both cell types together (the arch step's and the weight step's), no more."""
    overrides = ["strategy=gdas", "strategy.batch_size=8", "strategy.arch_start_epoch=0"]
    per_step = reads_per_step(tmp_path, monkeypatch, "search", *overrides)
    quiet = [n for i, n in enumerate(per_step) if (i + 1) % EVERY]  # skip the logging steps
    assert quiet and set(quiet) == {2}, per_step


@pytest.mark.parametrize("strategy, compiled", [("darts", True), ("gdas", False), ("spos", False)])
def test_compile_leaves_single_path_supernets_eager(strategy, compiled, capsys):
    """A compiled graph is static; single-path samplers run other ops every forward pass, so
    compile=true compiles their retrained network but not their supernet (and says so)."""
    from nas.run import builders
    from supernet.mixed import MixedOp

    cfg = compose_cfg(["experiment=smoke", f"strategy={strategy}", "compile=true"])
    module = builders.search_module(cfg, builders.space_from_config(cfg))
    net = module.supernet
    edges = [m for m in net.modules() if isinstance(m, MixedOp)]
    is_compiled = net._compiled_call_impl is not None or all(
        m._compiled_all is not None for m in edges
    )
    assert is_compiled == compiled
    said = capsys.readouterr().out
    assert ("stays eager" in said) == (not compiled)


# --- compile_scope=edge: one graph per edge shape, shared --------------------------------


@pytest.mark.slow  # 62 s of cold torch.compile on 2 cores
def test_edge_compiled_supernet_matches_eager_with_one_graph_per_edge_shape():
    """compile_candidates: every mixed op's candidates compiled; edges of one width and stride
    share a graph (a 1-cell supernet has two: stride 2 from the cell inputs, stride 1 inside),
    outputs and gradients equal eager ones, and nothing recompiles after the first step."""
    from torch._dynamo.utils import counters

    from supernet.mixed import MixedOp, compile_candidates

    eager = tiny_search_module(FirstOrder(), layers=1, seed=4).supernet
    compiled = tiny_search_module(FirstOrder(), layers=1, seed=4).supernet
    assert compile_candidates(compiled) == 5  # 2 + 3 edges
    shapes = {(m.C, m.stride) for m in compiled.modules() if isinstance(m, MixedOp)}
    assert len(shapes) == 2
    counters.clear()
    graphs = []
    for step in range(3):
        x, _ = random_batch(seed=step)
        alpha = torch.randn(14, 8, generator=torch.Generator().manual_seed(step))[:5]
        outs = []
        for net in (eager, compiled):
            a = alpha.clone().requires_grad_()
            weights = {"normal": torch.softmax(a, -1), "reduce": torch.softmax(a, -1)}
            out = net(x, weights)
            out.square().mean().backward()
            outs.append((out, a.grad))
        torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-4, atol=1e-6)
        for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs == [len(shapes)] * 3, graphs


def test_edge_compilation_allows_a_compiled_graph_per_edge_shape_and_step_kind():
    """All edges share one code object; Dynamo's default cap of 8 compiled variants would leave
    the edges past it eager on the full DARTS supernet (5 edge shapes x weight step, alpha-only
    step, ...), silently."""
    from supernet.mixed import GRAPHS_PER_EDGE_SHAPE, MixedOp, compile_candidates
    from supernet.spaces.darts import DartsSpace

    net = DartsSpace((3, 32, 32), 10, C=16, layers=8).build_supernet()
    shapes = {(m.C_op, m.stride) for m in net.modules() if isinstance(m, MixedOp)}
    assert len(shapes) == 5
    with torch._dynamo.config.patch(recompile_limit=8):
        compile_candidates(net)
        assert torch._dynamo.config.recompile_limit == GRAPHS_PER_EDGE_SHAPE * 5 > 8
        compile_candidates(net)  # never lowers a limit set higher
        torch._dynamo.config.recompile_limit = 1000
        compile_candidates(net)
        assert torch._dynamo.config.recompile_limit == 1000


@pytest.mark.slow
def test_edge_compiled_second_order_matches_eager():
    """Second order runs the compiled edges on the unrolled weights (functional_call) and under
    no_grad (the finite differences: two more graphs); its α gradient equals eager's."""
    from nas.strategies.arch_grad import SecondOrder
    from supernet.mixed import compile_candidates

    eager = tiny_search_module(SecondOrder(), layers=1, seed=4)
    compiled = tiny_search_module(SecondOrder(), layers=1, seed=4)
    compile_candidates(compiled.supernet)
    for step in range(2):
        train, val = random_batch(seed=step), random_batch(seed=10 + step)
        for module in (eager, compiled):
            module.arch.zero_grad()
            module.strategy.arch_grad(module, train, val)
        for a, b in zip(eager.arch.parameters(), compiled.arch.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scope", ["edge", "model"])
def test_compile_scope_option(scope):
    from nas.run import builders
    from supernet.mixed import MixedOp

    cfg = compose_cfg(["experiment=smoke", "compile=true", f"compile_scope={scope}"])
    net = builders.search_module(cfg, builders.space_from_config(cfg)).supernet
    edges = [m for m in net.modules() if isinstance(m, MixedOp)]
    edge_compiled = [m._compiled_all is not None for m in edges]
    assert all(edge_compiled) == (scope == "edge") and any(edge_compiled) == (scope == "edge")
    assert (net._compiled_call_impl is not None) == (scope == "model")
    assert set(net.state_dict()) == set(
        builders.space_from_config(cfg).build_supernet().state_dict()
    )
    # DDP spawn and torch.save pickle the network; the edges come back compiled.
    copy = pickle.loads(pickle.dumps(net))
    assert [m._compiled_all is not None for m in copy.modules() if isinstance(m, MixedOp)] == (
        edge_compiled
    )


def test_unknown_compile_scope_is_a_clear_error():
    from nas.run import builders

    cfg = compose_cfg(["experiment=smoke", "compile=true", "compile_scope=cell"])
    with pytest.raises(ValueError, match=r"compile_scope='cell'.*edge, model"):
        builders.search_module(cfg, builders.space_from_config(cfg))


@pytest.mark.slow  # 21 s of cold torch.compile
def test_compiled_child_does_not_recompile_as_drop_path_ramps():
    """Retraining raises drop_path_prob every epoch; it lives in a buffer, so a compiled child
    compiles once with drop path off (epoch 0) and once with it on, not once per epoch."""
    from torch._dynamo.utils import counters

    from nas.core.genotype import resolve_genotype
    from supernet.spaces.darts_child import DartsChildNetwork

    net = DartsChildNetwork(
        resolve_genotype("darts_v2"), [3, 8, 8], 5, C=4, layers=1, auxiliary=False
    )
    net.compile(dynamic=False)
    net.train()
    x = torch.randn(4, 3, 8, 8)
    counters.clear()
    graphs = []
    for prob in (0.0, 0.1, 0.2, 0.3):
        net.drop_path_prob = prob
        assert net.drop_path_prob == pytest.approx(prob)
        out, _ = net(x)
        out.square().mean().backward()
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs == [1, 2, 2, 2], graphs


@pytest.mark.parametrize(
    ("value", "accelerator", "expected"),
    [
        ("auto", "cpu", True),  # oneDNN's NHWC convolutions: the faster format on the CPU
        ("auto", "gpu", False),  # NCHW measured faster on an H100
        ("auto", "auto", not (torch.cuda.is_available() or torch.backends.mps.is_available())),
        ("true", "gpu", True),
        ("false", "cpu", False),
    ],
)
def test_channels_last_auto_follows_the_device(value, accelerator, expected):
    from nas.run import builders

    overrides = [f"channels_last={value}", f"trainer.accelerator={accelerator}"]
    # RGB input: the stem's weight then has 3 input channels, so its two formats differ.
    cfg = compose_cfg(
        ["experiment=smoke", "data=synthetic", "data.input_shape=[3,8,8]", *overrides]
    )
    assert builders.channels_last(cfg) is expected
    module = builders.search_module(cfg, builders.space_from_config(cfg))
    conv = next(
        m
        for m in module.supernet.modules()
        if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1 and m.weight.shape[2] > 1
    )
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == expected
    assert builders.search_data(cfg).channels_last is expected


def test_unknown_channels_last_is_a_clear_error():
    from nas.run import builders

    cfg = compose_cfg(["experiment=smoke", "channels_last=maybe"])
    with pytest.raises(ValueError, match=r"channels_last='maybe'.*true, false, auto"):
        builders.search_module(cfg, builders.space_from_config(cfg))
