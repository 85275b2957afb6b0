"""``cuda_graph=true``: the supernet's arch- and weight-step passes as CUDA graph replays.

The capture itself needs a GPU (the ``gpu`` test below). On the CPU the capture function is
replaced by one that does what ``torch.cuda.make_graphed_callables`` does to the network before
capturing (warm-up passes, forward and backward, on copies of the inputs) and then runs eager:
that checks the routing, the one-capture-per-signature cache, the recapture on moved tensors and
that the warm-up leaves no trace (BN running statistics) in what the step computes.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from nas.run import builders
from nas.run.schema import register_configs
from nas.strategies.arch_grad import FirstOrder
from supernet.cuda_graphs import SupernetGraphs
from tests.helpers.modules import random_batch, tiny_search_module

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def fake_make_graphed(call, sample_args, num_warmup_iters=3, allow_unused_input=False, pool=None):
    """``make_graphed_callables`` minus the capture: its warm-up passes, then eager calls."""
    params = [p for p in call.parameters() if p.requires_grad]
    for _ in range(num_warmup_iters):
        out = call(*sample_args)
        inputs = [t for t in sample_args if t.requires_grad] + params
        torch.autograd.grad(out, inputs, torch.ones_like(out), allow_unused=allow_unused_input)
    return call


def step(module, a_opt, train, val):
    """``SearchModule.training_step`` without Lightning: arch step, then weight step."""
    a_opt.zero_grad(set_to_none=True)
    module.strategy.arch_grad(module, train, val)
    a_opt.step()
    w_opt = module.weight_optimizer
    detached = {k: a.detach() for k, a in module.arch.as_dict().items()}
    loss, _ = module.loss(train, detached, graphable=True)
    w_opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.supernet.parameters(), 5.0)
    w_opt.step()
    return loss.detach()


def pair(seed: int = 0):
    eager = tiny_search_module(FirstOrder(), seed=seed)
    graphed = copy.deepcopy(eager)
    graphed.supernet_graphs = SupernetGraphs(graphed.supernet, make_graphed=fake_make_graphed)
    return eager, graphed


def adam(module):
    return torch.optim.Adam(module.arch.parameters(), lr=3e-4, betas=(0.5, 0.999))


def assert_same_state(a, b):
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), f"{name} differs"


def test_graphed_steps_compute_what_eager_steps_compute():
    eager, graphed = pair(seed=1)
    opts = adam(eager), adam(graphed)
    for i in range(3):
        train, val = random_batch(seed=2 * i), random_batch(seed=2 * i + 1)
        loss_e = step(eager, opts[0], train, val)
        loss_g = step(graphed, opts[1], train, val)
        assert torch.equal(loss_e, loss_g)
    # α, every weight and every BN running statistic: the warm-up passes left no trace.
    assert_same_state(eager, graphed)
    assert graphed.supernet_graphs.captures == 2  # arch step (α grads), weight step (w grads)


def test_one_capture_per_signature_and_recapture_when_tensors_move():
    _, module = pair()
    opt = adam(module)
    graphs = module.supernet_graphs
    train, val = random_batch(seed=0), random_batch(seed=1)
    step(module, opt, train, val)
    step(module, opt, train, val)
    assert graphs.captures == 2
    step(module, opt, random_batch(n=3, seed=2), random_batch(n=3, seed=3))  # a smaller batch
    assert graphs.captures == 4 and len(graphs.graphs) == 4
    module.supernet.to(torch.float64).to(torch.float32)  # new storage for every tensor
    step(module, opt, train, val)
    assert graphs.captures == 6 and len(graphs.graphs) == 2  # the stale graphs were dropped


def test_calls_that_are_not_graphed():
    _, module = pair()
    graphs = module.supernet_graphs
    x, y = random_batch()
    arch = {k: a.detach() for k, a in module.arch.as_dict().items()}
    module.loss((x, y), arch)  # not marked graphable (e.g. second-order DARTS' passes)
    with torch.no_grad():
        module.loss((x, y), arch, graphable=True)  # no autograd: validation
    module.eval()
    module.loss((x, y), arch, graphable=True)  # eval mode: BN uses running statistics
    module.train()
    active = {k: [None] * a.shape[0] for k, a in arch.items()}
    assert not graphs.eligible(active)  # sampled paths (GDAS): a different graph every call
    assert graphs.captures == 0
    module.loss((x, y), arch, graphable=True)
    assert graphs.captures == 1


def test_graphs_are_not_copied():
    _, module = pair()
    step(module, adam(module), random_batch(seed=0), random_batch(seed=1))
    clone = copy.deepcopy(module)
    assert clone.supernet_graphs.graphs == {} and clone.supernet_graphs.net is clone.supernet


def test_cuda_graph_on_cpu_is_a_clear_error():
    module = tiny_search_module(FirstOrder())
    module.supernet_graphs = SupernetGraphs(module.supernet)
    arch = module.arch.as_dict()
    with pytest.raises(RuntimeError, match=r"cuda_graph=true .* runs on cpu.*cuda_graph=false"):
        module.loss(random_batch(), arch, graphable=True)


SMALL = ("data=synthetic", "search_space.C=4", "search_space.layers=3", "search_space.steps=2",
         "search_space.multiplier=2")  # fmt: skip


def compose_config(*overrides):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_config_wiring_and_errors(capsys):
    cfg = compose_config("cuda_graph=true", *SMALL)
    space = builders.space_from_config(cfg)
    assert builders.search_module(cfg, space).supernet_graphs is not None
    cfg = compose_config("cuda_graph=true", "strategy=gdas", *SMALL)
    assert builders.search_module(cfg, space).supernet_graphs is None
    assert "cuda_graph=true: strategy=gdas" in capsys.readouterr().out
    cfg = compose_config("cuda_graph=true", "compile=true", "compile_mode=reduce-overhead", *SMALL)
    with pytest.raises(ValueError, match="compile_mode='reduce-overhead'"):
        builders.search_module(cfg, space)
    cfg = compose_config("cuda_graph=true", "strategy=darts_2nd", *SMALL)
    with pytest.raises(ValueError, match="strategy=darts_2nd.*cuda_graph=false"):
        builders.search_module(cfg, space)


def graphed_matches_eager_on_gpu(
    strategy: str, captures: int, dtype: torch.dtype | None = None, *overrides: str
) -> None:
    """Three bilevel steps replayed from real captures equal the eager ones (under autocast to
    ``dtype`` when given, around each whole step as Lightning's bf16-mixed does)."""
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    cfg = compose_config(f"strategy={strategy}", *SMALL, "data.num_classes=5", *overrides)
    eager = builders.search_module(cfg, builders.space_from_config(cfg)).cuda()
    graphed = copy.deepcopy(eager)
    graphed.supernet_graphs = SupernetGraphs(graphed.supernet)
    opts = adam(eager), adam(graphed)
    precision = (
        contextlib.nullcontext
        if dtype is None
        else functools.partial(torch.autocast, "cuda", dtype=dtype)
    )
    for i in range(3):
        train = tuple(t.cuda() for t in random_batch(seed=2 * i))
        val = tuple(t.cuda() for t in random_batch(seed=2 * i + 1))
        with precision():
            loss_g = step(graphed, opts[1], train, val)
        with precision():
            loss_e = step(eager, opts[0], train, val)
        torch.testing.assert_close(loss_g, loss_e)
    assert graphed.supernet_graphs.captures == captures
    for (name, x), (_, y) in zip(eager.state_dict().items(), graphed.state_dict().items()):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("strategy", ["darts", "pcdarts", "drnas"])
def test_captured_graphs_match_eager_on_gpu(strategy):
    """The real capture (PC-DARTS: β is a second graph input per cell type; DrNAS: Dirichlet
    draws stay eager). Passed on an H100, 2026-11-23."""
    graphed_matches_eager_on_gpu(strategy, captures=2)  # arch step and weight step


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_captured_graphs_with_triton_op_kernels_match_eager_on_gpu():
    """The Triton batch norm and depthwise kernels inside real captures (not run on a GPU yet)."""
    graphed_matches_eager_on_gpu(
        "darts",
        2,
        None,
        "search_space.batch_norm_kernel=triton",
        "search_space.depthwise_kernel=triton",
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_captured_graphs_with_matmul_pointwise_convs_match_eager_on_gpu():
    """The grouped 1x1 convolutions as batched matrix products inside real captures (not run on
    a GPU yet)."""
    graphed_matches_eager_on_gpu("darts", 2, None, "search_space.pointwise_kernel=matmul")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.xfail(
    reason="second-order DARTS: the weight step's backward capture failed on an H100 after the "
    "eager virtual step (bf16 run, cudaErrorStreamCaptureImplicit); builders refuse the "
    "combination. An XPASS here is the evidence for lifting that refusal.",
    strict=False,
)
@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
def test_second_order_capture_on_gpu(dtype):
    graphed_matches_eager_on_gpu("darts_2nd", captures=1, dtype=dtype)  # the weight step


def test_cuda_graph_search_on_cpu_stops_with_a_clear_error(tmp_path, monkeypatch, capsys):
    from tests.helpers.runs import run_train

    # On the CPU also where a GPU exists (the auto accelerator would pick it and capture).
    args = ("stage=search", "cuda_graph=true", "trainer.accelerator=cpu")
    assert run_train(monkeypatch, tmp_path, *args) != 0
    err = capsys.readouterr().err
    assert "cuda_graph=true" in err and "cuda_graph=false" in err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("op_kernels", ["torch", "triton"])
def test_cuda_graph_search_runs_end_to_end_on_gpu(precision, op_kernels, tmp_path, monkeypatch):
    """``train.py stage=search cuda_graph=true`` under Lightning on one GPU (bf16 too, and with
    the Triton batch norm and depthwise kernels captured in the graphs): it finishes and writes
    finite α and a genotype. Not run on a GPU yet; the comparison with eager steps is
    ``test_captured_graphs_match_eager_on_gpu``."""
    import json

    from tests.helpers.runs import run_train

    args = ("stage=search", "cuda_graph=true", "trainer.accelerator=gpu", "seed=5")
    kernels = (
        f"search_space.batch_norm_kernel={op_kernels}",
        f"search_space.depthwise_kernel={op_kernels}",
    )
    assert run_train(monkeypatch, tmp_path, *args, *kernels, f"trainer.precision={precision}") == 0
    alphas = json.loads((tmp_path / "alphas.json").read_text())["alphas"]
    values = torch.tensor([v for rows in alphas.values() for row in rows for v in row])
    assert torch.isfinite(values).all()
    assert (tmp_path / "genotype.json").exists()
