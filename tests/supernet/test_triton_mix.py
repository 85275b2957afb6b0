"""The fused Triton mixed-op kernel against the PyTorch reference (interpreter on CPU, or GPU)."""

from __future__ import annotations

import pytest
import torch

from supernet import kernels
from supernet.kernels.torch_ref import weighted_sum

triton_mix_module = pytest.importorskip(
    "supernet.kernels.triton_mix", reason="triton not installed"
)
triton_mix = triton_mix_module.triton_mix
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = [(3, 5, 7, 9), (2, 16, 8, 8), (1, 1, 1, 1), (4, 3, 33, 17)]
COUNTS = [1, 2, 7, 8, 9, 17, 35]  # 35 = node 5 of a DARTS cell: 5 edges x 7 computed ops


def random_inputs(K, shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(shape, generator=g).to(DEVICE, dtype).requires_grad_() for _ in range(K)]
    w = torch.randn(K, generator=g).to(DEVICE).requires_grad_()
    grad_out = torch.randn(shape, generator=g).to(DEVICE, dtype)
    return xs, w, grad_out


def run(fn, xs, w, grad_out):
    for t in (*xs, w):
        t.grad = None
    out = fn(xs, w)
    out.backward(grad_out)
    return out.detach().clone(), [x.grad.clone() for x in xs], w.grad.clone()


def reference(xs, w, grad_out):
    """Float64 reference on the same (possibly rounded) inputs."""
    xs64 = [x.detach().double().requires_grad_() for x in xs]
    w64 = w.detach().double().requires_grad_()
    out = weighted_sum(xs64, w64)
    out.backward(grad_out.double())
    return out.detach(), [x.grad for x in xs64], w64.grad


def assert_rel_close(got, want, rtol):
    """Every element: |got - want| <= rtol * max|want| (relative to the tensor's scale)."""
    scale = want.abs().max().clamp_min(1e-30)
    err = (got.double() - want).abs().max() / scale
    assert err < rtol, f"relative error {err:.3e}"


@pytest.mark.parametrize("K", COUNTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fp32_forward_and_backward_match_reference(K, shape):
    xs, w, grad_out = random_inputs(K, shape, seed=K)
    out, gxs, gw = run(triton_mix, xs, w, grad_out)
    ref_out, ref_gxs, ref_gw = reference(xs, w, grad_out)
    assert out.shape == ref_out.shape and out.dtype == torch.float32
    assert_rel_close(out, ref_out, 1e-5)
    for gx, ref in zip(gxs, ref_gxs):
        assert gx.dtype == torch.float32
        assert_rel_close(gx, ref, 1e-6)
    assert_rel_close(gw, ref_gw, 1e-5)


@pytest.mark.parametrize("K", [3, 11])
def test_bf16_storage_accumulates_in_fp32(K):
    xs, w, grad_out = random_inputs(K, (2, 8, 9, 9), dtype=torch.bfloat16, seed=1)
    out, gxs, gw = run(triton_mix, xs, w, grad_out)
    ref_out, ref_gxs, ref_gw = reference(xs, w, grad_out)
    assert out.dtype == torch.bfloat16 and all(g.dtype == torch.bfloat16 for g in gxs)
    # One final rounding to bf16 only: half an ulp (2^-8) on a GPU (round to nearest even);
    # Triton's CPU interpreter truncates on the downcast, so one ulp (2^-7) there.
    ulp = 2**-8 if DEVICE == "cuda" else 2**-7
    assert_rel_close(out, ref_out, ulp)
    assert_rel_close(gw, ref_gw, 1e-5)  # weight gradients stay fp32
    for gx, ref in zip(gxs, ref_gxs):
        assert_rel_close(gx, ref, ulp)


def test_zero_weight_candidates_are_not_read():
    xs, w, grad_out = random_inputs(4, (2, 3, 5, 5))
    with torch.no_grad():
        xs[2].fill_(float("nan"))
        w[2] = 0.0
    out = triton_mix(xs, w)
    assert torch.isfinite(out).all()
    ref = weighted_sum([x for i, x in enumerate(xs) if i != 2], w[[0, 1, 3]])
    assert_rel_close(out.detach(), ref.detach().double(), 1e-6)


def test_channels_last_inputs_keep_their_layout():
    xs, w, grad_out = random_inputs(5, (2, 6, 7, 7), seed=3)
    xs_cl = [x.detach().contiguous(memory_format=torch.channels_last).requires_grad_() for x in xs]
    out, gxs, gw = run(triton_mix, xs_cl, w, grad_out)
    ref_out, ref_gxs, ref_gw = reference(xs, w, grad_out)
    assert_rel_close(out, ref_out, 1e-5)
    assert_rel_close(gw, ref_gw, 1e-5)
    assert all(gx.shape == ref.shape for gx, ref in zip(gxs, ref_gxs))


def test_results_are_bitwise_deterministic():
    xs, w, grad_out = random_inputs(13, (3, 5, 11, 11), seed=4)
    first = run(triton_mix, xs, w, grad_out)
    second = run(triton_mix, xs, w, grad_out)
    assert torch.equal(first[0], second[0]) and torch.equal(first[2], second[2])


def test_backend_dispatch(monkeypatch):
    assert kernels.resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="triton"):
        kernels.resolve_backend("cuda_magic")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs CUDA tensors"):
            kernels.resolve_backend("triton", torch.device("cpu"))


def test_supernet_with_triton_kernel_matches_torch_kernel():
    from supernet.spaces.darts import DartsSpace

    torch.manual_seed(0)
    nets = {}
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        space = DartsSpace(
            input_shape=(3, 8, 8),
            num_classes=4,
            C=4,
            layers=3,
            steps=2,
            multiplier=2,
            kernel=backend,
        )
        nets[backend] = space.build_supernet().to(DEVICE)
    x = torch.randn(2, 3, 8, 8, device=DEVICE)
    alphas = {k: torch.randn(5, 8, device=DEVICE, requires_grad=True) for k in ("normal", "reduce")}
    outs, grads = {}, {}
    for backend, net in nets.items():
        weights = {k: torch.softmax(a, -1) for k, a in alphas.items()}
        out = net(x, weights)
        outs[backend] = out.detach()
        grads[backend] = torch.autograd.grad(out.square().sum(), list(alphas.values()))
    torch.testing.assert_close(outs["triton"], outs["torch"], rtol=1e-5, atol=1e-6)
    for a, b in zip(grads["triton"], grads["torch"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("K", [6, 21])  # 21: two launches
def test_channel_slices_are_read_in_place(K):
    """Grouped edges hand the kernel channel slices of one wide tensor (one slice per edge),
    mixed with dense tensors (skip connections): read at their own batch stride, not copied."""
    g = torch.Generator().manual_seed(K)
    wide = torch.randn(3, 4 * 5, 7, 9, generator=g).to(DEVICE).requires_grad_()
    dense = [torch.randn(3, 5, 7, 9, generator=g).to(DEVICE).requires_grad_() for _ in range(K - 4)]
    w = torch.randn(K, generator=g).to(DEVICE).requires_grad_()
    grad_out = torch.randn(3, 5, 7, 9, generator=g).to(DEVICE)

    def inputs():
        return [*wide.chunk(4, dim=1), *dense]

    laid_out, strides, channels_last = triton_mix_module._layout(inputs())
    assert all(a.data_ptr() == b.data_ptr() for a, b in zip(laid_out, inputs()))
    assert strides == [4 * 5 * 7 * 9] * 4 + [5 * 7 * 9] * (K - 4) and not channels_last
    for t in (wide, *dense, w):
        t.grad = None
    out = triton_mix(inputs(), w)
    out.backward(grad_out)
    got = out.detach().clone(), wide.grad.clone(), [d.grad.clone() for d in dense], w.grad.clone()
    ref_out, ref_gxs, ref_gw = reference(inputs(), w, grad_out)
    assert_rel_close(got[0], ref_out, 1e-5)
    assert_rel_close(got[1], torch.cat(ref_gxs[:4], dim=1), 1e-5)
    for gx, ref in zip(got[2], ref_gxs[4:]):
        assert_rel_close(gx, ref, 1e-5)
    assert_rel_close(got[3], ref_gw, 1e-5)


def test_inputs_not_dense_per_sample_are_copied():
    x = torch.randn(2, 6, 5, 5, device=DEVICE)
    odd = x[:, :, :, 1:4]  # not dense within a sample
    sliced = torch.randn(2, 12, 5, 3, device=DEVICE)[:, 6:]  # dense within a sample
    laid_out, strides, _ = triton_mix_module._layout([odd, sliced])
    assert laid_out[0].is_contiguous() and laid_out[1].data_ptr() == sliced.data_ptr()
    assert strides == [6 * 5 * 3, 12 * 5 * 3]
