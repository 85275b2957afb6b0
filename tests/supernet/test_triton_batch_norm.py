"""The Triton batch norm (split reductions) against ``F.batch_norm`` in float64: values, input,
weight and bias gradients, running statistics (interpreter on CPU, or a GPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from supernet.kernels import op_kernels

tbn = pytest.importorskip("supernet.kernels.triton_batch_norm", reason="triton not installed")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = [(3, 5, 7, 9), (2, 16, 8, 8), (5, 3, 1, 1), (1, 2, 3, 1), (4, 7, 17, 13)]
MOMENTUM, EPS = 0.1, 1e-5


def make(shape, affine, running, dtype=torch.float32, seed=0, loc=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    C = shape[1]
    x = (torch.randn(shape, generator=g) * scale + loc).to(DEVICE, dtype).requires_grad_()
    w = torch.randn(C, generator=g).to(DEVICE).requires_grad_() if affine else None
    b = torch.randn(C, generator=g).to(DEVICE).requires_grad_() if affine else None
    stats = (torch.randn(C, generator=g).to(DEVICE), torch.rand(C, generator=g).to(DEVICE) + 0.5)
    dy = torch.randn(shape, generator=g).to(DEVICE, dtype)
    return x, w, b, stats if running else (None, None), dy


def run(x, w, b, stats, dy):
    """Triton: output, running stats after the call, gradients of x, w and b."""
    rm, rv = (None, None) if stats[0] is None else (stats[0].clone(), stats[1].clone())
    y = tbn.triton_batch_norm(x, rm, rv, w, b, MOMENTUM, EPS)
    leaves = [t for t in (x, w, b) if t is not None]
    grads = torch.autograd.grad(y, leaves, dy)
    return y.detach(), (rm, rv), grads


def reference(x, w, b, stats, dy):
    """Float64 ``F.batch_norm`` on the same (possibly rounded) inputs."""
    x64 = x.detach().double().requires_grad_()
    w64 = None if w is None else w.detach().double().requires_grad_()
    b64 = None if b is None else b.detach().double().requires_grad_()
    rm, rv = (None, None) if stats[0] is None else (stats[0].double(), stats[1].double())
    y = F.batch_norm(x64, rm, rv, w64, b64, True, MOMENTUM, EPS)
    leaves = [t for t in (x64, w64, b64) if t is not None]
    return y.detach(), (rm, rv), torch.autograd.grad(y, leaves, dy.double())


def assert_rel_close(got, want, rtol, what=""):
    """Every element: |got - want| <= rtol * max|want| (relative to the tensor's scale)."""
    scale = want.abs().max().clamp_min(1e-30)
    err = (got.double() - want).abs().max() / scale
    assert err < rtol, f"{what}: relative error {err:.3e}"


def check(got, want, rtol):
    (y, stats, grads), (ry, rstats, rgrads) = got, want
    assert y.shape == ry.shape
    assert_rel_close(y, ry, rtol, "output")
    for s, r, name in zip(stats, rstats, ("running mean", "running var")):
        if r is not None:
            assert_rel_close(s, r, rtol, name)
    for g, r, name in zip(grads, rgrads, ("dx", "dweight", "dbias")):
        assert g.shape == r.shape
        assert_rel_close(g, r, rtol, name)


@pytest.fixture(params=["default", "small"])
def block(request, monkeypatch):
    """The default block (one chunk per channel on small inputs) and a 16-element block, which
    splits every channel into several chunks of several blocks (the partial results, their
    merges and their combination); fewer programs keep the interpreter quick."""
    if request.param == "small":
        monkeypatch.setattr(tbn, "BLOCK", 16)
        monkeypatch.setattr(tbn, "TARGET_PROGRAMS", 64)
    return tbn.BLOCK


@pytest.mark.parametrize(
    "affine, running",  # the mixed cases by default; both-off and both-on under -m slow (17 s)
    [(False, True), (True, False), pytest.param(False, False, marks=pytest.mark.slow),
     pytest.param(True, True, marks=pytest.mark.slow)],
)  # fmt: skip
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fp32_matches_reference(shape, affine, running, block):
    x, w, b, stats, dy = make(shape, affine, running, seed=sum(shape))
    got = run(x, w, b, stats, dy)
    assert got[0].dtype == torch.float32
    check(got, reference(x, w, b, stats, dy), 1e-5)


def test_small_blocks_split_channels_into_chunks_of_several_blocks(block):
    M = 4 * 33 * 17
    used, chunk, chunks = tbn.plan(C=7, M=M)
    assert used == min(block, 4096) and chunk % used == 0
    assert (chunks - 1) * chunk < M <= chunks * chunk
    if block == 16:
        assert chunks > 1 and chunk > block


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_storage_accumulates_in_fp32(dtype, block):
    x, w, b, stats, dy = make((4, 6, 9, 11), True, True, dtype=dtype, seed=3)
    y, rstats, grads = run(x, w, b, stats, dy)
    assert y.dtype == dtype and grads[0].dtype == dtype and grads[1].dtype == torch.float32
    ry, rrstats, rgrads = reference(x, w, b, stats, dy)
    # Storage rounding of the output and dx only (2^-8 for bf16); statistics and the weight
    # gradients come from fp32 sums of the stored inputs.
    assert_rel_close(y, ry, 1e-2, "output")
    assert_rel_close(grads[0], rgrads[0], 1e-2, "dx")
    for got, want in zip((*rstats, *grads[1:]), (*rrstats, *rgrads[1:])):
        assert_rel_close(got, want, 1e-5)


def test_large_mean_is_stable(block):
    """Per-channel mean 1e4, std 1: a sum-of-squares variance would cancel in fp32."""
    x, w, b, stats, dy = make((4, 3, 16, 16), False, True, seed=5, loc=1e4)
    y, rstats, _ = run(x, w, b, stats, dy)
    ry, rrstats, _ = reference(x, w, b, stats, dy)
    assert_rel_close(y, ry, 1e-2, "output")
    assert_rel_close(rstats[1], rrstats[1], 1e-3, "running var")


@pytest.mark.slow  # 7 s in the interpreter; the same kernels' numbers are checked by default
def test_results_are_bitwise_deterministic(block):
    x, w, b, stats, dy = make((3, 5, 13, 11), True, True, seed=7)
    first, second = run(x, w, b, stats, dy), run(x, w, b, stats, dy)
    assert torch.equal(first[0], second[0])
    assert all(torch.equal(a, c) for a, c in zip(first[2], second[2]))
    assert all(torch.equal(a, c) for a, c in zip(first[1], second[1]))


# --- the dispatcher: search_space.batch_norm_kernel (op_kernels) -------------------------------------------
def test_dispatch_takes_triton_for_contiguous_nchw(monkeypatch):
    calls = []
    monkeypatch.setattr(tbn, "triton_batch_norm", lambda *a: calls.append(a) or a[0] * 1)
    x = torch.randn(2, 3, 4, 4, device=DEVICE)
    op_kernels.batch_norm(x, None, None, None, None, 0.1, 1e-5, "triton")
    assert len(calls) == 1
    # channels_last, or the torch backend: F.batch_norm
    op_kernels.batch_norm(
        x.to(memory_format=torch.channels_last), None, None, None, None, 0.1, 1e-5, "triton"
    )
    op_kernels.batch_norm(x, None, None, None, None, 0.1, 1e-5, "torch")
    assert len(calls) == 1


def test_one_value_per_channel_is_pytorchs_error():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        op_kernels.batch_norm(torch.randn(1, 3, 1, 1), None, None, None, None, 0.1, 1e-5, "triton")


def test_backend_errors_name_the_value_and_the_choices(monkeypatch):
    with pytest.raises(ValueError, match=r"batch_norm_kernel='auto'.*torch, triton"):
        op_kernels.OpKernels(batch_norm="auto")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="batch_norm_kernel=triton needs CUDA tensors"):
            op_kernels.resolve_op_backend("triton", "batch_norm_kernel", torch.device("cpu"))


@pytest.mark.slow  # 8 s in Triton's interpreter; the op-level tests stay
def test_grouped_supernet_with_triton_batch_norm_matches_torch():
    """A NAS-Bench-201 supernet with either batch norm: output, α and weight gradients, running
    statistics after a training pass (the grouped edge ops use the kernel; the DARTS supernet
    with both Triton kernels is in tests/supernet/test_triton_depthwise.py)."""
    from supernet.spaces import build_space
    from tests.helpers.twins import assert_twins_agree

    nets = []
    for backend in ("triton", "torch"):
        torch.manual_seed(0)
        space = build_space("nb201", [3, 8, 8], 4, C=4, layers=1, batch_norm_kernel=backend)
        nets.append(space.build_supernet().to(DEVICE))
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    assert_twins_agree(*nets, x, shape=(len(space.edges), len(space.ops)))


def test_unknown_batch_norm_kernel_in_the_config_is_a_clear_error():
    from supernet.spaces import build_space

    with pytest.raises(ValueError, match=r"batch_norm_kernel='cudnn'.*torch, triton"):
        build_space("darts", [3, 8, 8], 4, C=4, layers=3, batch_norm_kernel="cudnn")


def test_config_key_reaches_the_grouped_cells():
    from nas.run import builders
    from supernet.grouped_edges import GroupedEdgesCell
    from tests.helpers.config import compose_cfg

    cfg = compose_cfg(["experiment=smoke", "search_space.batch_norm_kernel=triton"])
    net = builders.space_from_config(cfg).build_supernet()
    cells = [m for m in net.modules() if isinstance(m, GroupedEdgesCell)]
    assert cells and all(c.op_kernels.batch_norm == "triton" for c in cells)
    default = builders.space_from_config(compose_cfg(["experiment=smoke"])).build_supernet()
    assert all(
        m.op_kernels.batch_norm == "torch"
        for m in default.modules()
        if isinstance(m, GroupedEdgesCell)
    )
