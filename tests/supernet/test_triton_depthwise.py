"""The Triton depthwise convolution against float64 ``F.conv2d``: output, input and weight
gradients, for the DARTS geometries (3x3/5x5, stride 1/2, dilation 1/2), odd plane sizes and
tiles that split or share planes (interpreter on CPU, or a GPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from supernet.kernels import op_kernels

tdw = pytest.importorskip("supernet.kernels.triton_depthwise", reason="triton not installed")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (kernel, stride, dilation): sep_conv_3x3/5x5 (stride 1 or 2), dil_conv_3x3/5x5
GEOMETRIES = [(3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 1), (3, 1, 2), (5, 2, 2)]
SHAPES = [(2, 3, 8, 8), (3, 5, 7, 9)]


def make(shape, K, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).to(DEVICE, dtype).requires_grad_()
    w = torch.randn(shape[1], 1, K, K, generator=g).to(DEVICE, dtype).requires_grad_()
    return x, w, g


def run(conv, x, w, dy_seed, geometry):
    y = conv(x, w, *geometry)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(dy_seed)).to(y)
    dx, dw = torch.autograd.grad(y, (x, w), dy)
    return y.detach(), dx, dw, dy


def reference(x, w, dy, geometry):
    x64, w64 = (t.detach().double().requires_grad_() for t in (x, w))
    stride, padding, dilation = geometry
    y = F.conv2d(x64, w64, None, stride, padding, dilation, x.shape[1])
    dx, dw = torch.autograd.grad(y, (x64, w64), dy.double())
    return y.detach(), dx, dw


def assert_rel_close(got, want, rtol, what=""):
    """Every element: |got - want| <= rtol * max|want| (relative to the tensor's scale)."""
    scale = want.abs().max().clamp_min(1e-30)
    err = (got.double() - want).abs().max() / scale
    assert err < rtol, f"{what}: relative error {err:.3e}"


@pytest.fixture(params=["default", "small"])
def tile(request, monkeypatch):
    """The default tile (whole planes, several per program) and 64 elements, which cuts planes
    into row tiles that straddle planes and makes the weight gradient reduce over several
    chunks."""
    if request.param == "small":
        monkeypatch.setattr(tdw, "TILE", 64)
        monkeypatch.setattr(tdw, "WEIGHT_GRAD_TILE", 64)
    return tdw.TILE


def geometry_of(K, stride, dilation):
    return stride, dilation * (K - 1) // 2, dilation


@pytest.mark.parametrize("K,stride,dilation", GEOMETRIES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fp32_matches_reference(shape, K, stride, dilation, tile):
    x, w, _ = make(shape, K, seed=K * stride * dilation)
    geometry = geometry_of(K, stride, dilation)
    y, dx, dw, dy = run(tdw.triton_depthwise_conv, x, w, 1, geometry)
    ry, rdx, rdw = reference(x, w, dy, geometry)
    assert y.shape == ry.shape and dx.shape == x.shape and dw.shape == w.shape
    assert_rel_close(y, ry, 1e-5, "output")
    assert_rel_close(dx, rdx, 1e-5, "input gradient")
    assert_rel_close(dw, rdw, 1e-5, "weight gradient")


def test_small_tiles_split_the_weight_gradient_into_chunks(tile):
    block_h, block_w = tdw._tile(8, rows=4 * 8, budget=tdw.WEIGHT_GRAD_TILE)
    chunk, chunks = tdw.weight_grad_plan(C=3, total_rows=4 * 8, block_h=block_h)
    assert chunk % block_h == 0 and (chunks - 1) * chunk < 32 <= chunks * chunk
    assert block_w == 8 and block_h == (8 if tile == 64 else 32)
    if tile == 64:
        assert chunks > 1


def test_bf16_storage_accumulates_in_fp32():
    x, w, _ = make((2, 6, 9, 11), 5, dtype=torch.bfloat16, seed=3)
    geometry = geometry_of(5, 2, 1)
    y, dx, dw, dy = run(tdw.triton_depthwise_conv, x, w, 2, geometry)
    assert y.dtype == dx.dtype == dw.dtype == torch.bfloat16
    ry, rdx, rdw = reference(x, w, dy, geometry)
    # bf16 rounding of the stored results only (2^-8), not of 25-term sums
    for got, want, what in ((y, ry, "output"), (dx, rdx, "dx"), (dw, rdw, "dw")):
        assert_rel_close(got, want, 1e-2, what)


def test_results_are_bitwise_deterministic(tile):
    x, w, _ = make((3, 4, 9, 7), 3, seed=9)
    geometry = geometry_of(3, 1, 2)
    first = run(tdw.triton_depthwise_conv, x, w, 4, geometry)
    second = run(tdw.triton_depthwise_conv, x, w, 4, geometry)
    assert all(torch.equal(a, b) for a, b in zip(first[:3], second[:3]))


# --- the dispatcher: search_space.depthwise_kernel (op_kernels) --------------------------------
def test_dispatch_takes_triton_for_square_nchw(monkeypatch):
    calls = []
    monkeypatch.setattr(tdw, "triton_depthwise_conv", lambda *a: calls.append(a) or a[0] * 1)
    x = torch.randn(2, 3, 8, 8, device=DEVICE)
    w = torch.randn(3, 1, 3, 3, device=DEVICE)
    op_kernels.depthwise_conv2d(x, w, (1, 1), (1, 1), (1, 1), "triton")
    assert len(calls) == 1 and calls[0][2:] == (1, 1, 1)
    # channels_last, an unequal stride, a non-square kernel, or the torch backend: F.conv2d
    op_kernels.depthwise_conv2d(x.to(memory_format=torch.channels_last), w, 1, 1, 1, "triton")
    op_kernels.depthwise_conv2d(x, w, (1, 2), 1, 1, "triton")
    op_kernels.depthwise_conv2d(x, torch.randn(3, 1, 1, 3, device=DEVICE), 1, (0, 1), 1, "triton")
    op_kernels.depthwise_conv2d(x, w, 1, 1, 1, "torch")
    assert len(calls) == 1


def test_autocast_runs_the_kernel_in_autocasts_dtype():
    x, w, _ = make((2, 4, 8, 8), 3, seed=5)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        y = op_kernels.depthwise_conv2d(x, w, 1, 1, 1, "triton")
        want = F.conv2d(x, w, None, 1, 1, 1, 4)
    assert y.dtype == want.dtype == torch.bfloat16
    assert_rel_close(y, want.double(), 1e-2, "output")
    y.float().sum().backward()
    assert x.grad.dtype == w.grad.dtype == torch.float32


def test_backend_errors_name_the_value_and_the_choices(monkeypatch):
    with pytest.raises(ValueError, match=r"depthwise_kernel='cudnn'.*torch, triton"):
        op_kernels.OpKernels(depthwise="cudnn")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="depthwise_kernel=triton needs CUDA tensors"):
            op_kernels.resolve_op_backend("triton", "depthwise_kernel", torch.device("cpu"))


@pytest.mark.slow  # 18 s in Triton's interpreter; the op-level tests stay
def test_grouped_supernet_with_triton_kernels_matches_torch():
    """The DARTS supernet with both Triton kernels for its grouped ops against PyTorch's:
    output, α and weight gradients, running statistics after a training pass."""
    from supernet.spaces.darts import DartsSpace
    from tests.helpers.twins import assert_twins_agree

    nets = []
    for backend in ("triton", "torch"):
        torch.manual_seed(0)
        space = DartsSpace(
            (3, 8, 8), 4, C=2, layers=3, steps=2, multiplier=2,
            batch_norm_kernel=backend, depthwise_kernel=backend,
        )  # fmt: skip
        nets.append(space.build_supernet().to(DEVICE))
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    assert_twins_agree(*nets, x, shape=(5, 8))


def test_config_key_reaches_the_grouped_cells():
    from nas.run import builders
    from supernet.grouped_edges import GroupedEdgesCell
    from tests.helpers.config import compose_cfg

    cfg = compose_cfg(["experiment=smoke", "search_space.depthwise_kernel=triton"])
    net = builders.space_from_config(cfg).build_supernet()
    cells = [m for m in net.modules() if isinstance(m, GroupedEdgesCell)]
    assert cells and all(c.op_kernels == op_kernels.OpKernels("torch", "triton") for c in cells)


@pytest.mark.parametrize("key", ["kernel", "batch_norm_kernel", "depthwise_kernel"])
def test_triton_on_a_cpu_run_fails_before_any_work(key, monkeypatch):
    from nas.run import builders
    from tests.helpers.config import compose_cfg

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    overrides = ["experiment=smoke", "trainer.accelerator=cpu", f"search_space.{key}=triton"]
    cfg = compose_cfg(overrides)
    with pytest.raises(RuntimeError, match=f"search_space.{key}=triton needs CUDA tensors"):
        builders.search_module(cfg, builders.space_from_config(cfg))
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the interpreter runs them on the CPU
    builders.search_module(cfg, builders.space_from_config(cfg))


def test_train_py_reports_triton_on_the_cpu_as_a_config_error(tmp_path, monkeypatch, capsys):
    from tests.helpers.runs import run_train

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    args = ("stage=search", "trainer.accelerator=cpu", "search_space.depthwise_kernel=triton")
    assert run_train(monkeypatch, tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert "search_space.depthwise_kernel=triton needs CUDA tensors" in err
    assert "Traceback" not in err and not (tmp_path / "alphas.json").exists()
