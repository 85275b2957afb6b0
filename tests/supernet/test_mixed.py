"""Tests of supernet/mixed.py and supernet/kernels: the mixed op is "weights x candidates"."""

from __future__ import annotations

import pytest
import torch

from supernet import kernels
from supernet.kernels.torch_ref import weighted_sum
from supernet.mixed import MixedOp
from supernet.spaces.darts import DARTS_OPS

C = 4
N = 3
H = 8
N_OPS = len(DARTS_OPS)


def _mixed(stride: int) -> MixedOp:
    return MixedOp(DARTS_OPS, C, stride).double()


def _onehot(k: int) -> torch.Tensor:
    w = torch.zeros(N_OPS, dtype=torch.float64)
    w[k] = 1.0
    return w


def _expected_shape(stride: int) -> tuple[int, ...]:
    return (N, C, H // stride, H // stride)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", range(N_OPS), ids=DARTS_OPS)
def test_onehot_reproduces_single_op(k: int, stride: int, train: bool) -> None:
    torch.manual_seed(0)
    mixed = _mixed(stride).train(train)
    x = torch.randn(N, C, H, H, dtype=torch.float64)
    out = mixed(x, _onehot(k))
    assert out.shape == _expected_shape(stride)
    if DARTS_OPS[k] == "none":
        assert torch.count_nonzero(out) == 0
    else:
        # BN in train mode normalises with batch statistics: deterministic for a given input.
        torch.testing.assert_close(out, mixed.candidates[k](x))


@pytest.mark.parametrize("stride", [1, 2])
def test_weight_gradient_is_inner_product(stride: int) -> None:
    torch.manual_seed(0)
    mixed = _mixed(stride).eval()
    x = torch.randn(N, C, H, H, dtype=torch.float64)
    w = torch.rand(N_OPS, dtype=torch.float64, requires_grad=True)
    out = mixed(x, w)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    with torch.no_grad():
        expected = torch.stack(
            [
                torch.zeros((), dtype=torch.float64)
                if name == "none"
                else (g * mixed.candidates[k](x)).sum()
                for k, name in enumerate(DARTS_OPS)
            ]
        )
        ref = sum(
            w[k] * mixed.candidates[k](x) for k, name in enumerate(DARTS_OPS) if name != "none"
        )
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(w.grad, expected)
    assert w.grad[DARTS_OPS.index("none")] == 0
    assert torch.count_nonzero(w.grad[1:]) == N_OPS - 1


def test_weight_gradient_matches_gradcheck() -> None:
    torch.manual_seed(0)
    mixed = _mixed(2).eval()
    x = torch.randn(2, C, 5, 5, dtype=torch.float64)
    w = torch.rand(N_OPS, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: mixed(x, w), (w,))


def _count_calls(mixed: MixedOp) -> list[int]:
    calls = [0] * len(mixed.candidates)

    def hook(k: int):
        def fn(module, inputs, output) -> None:
            calls[k] += 1

        return fn

    # The last module of a candidate runs once per computation, whether the candidate ran
    # whole or after a ReLU shared with the edge's other candidates (``after_relu``).
    for k, cand in enumerate(mixed.candidates):
        list(cand.modules())[-1].register_forward_hook(hook(k))
    return calls


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", range(1, N_OPS), ids=DARTS_OPS[1:])
def test_active_computes_only_that_op(k: int, stride: int) -> None:
    torch.manual_seed(0)
    mixed = _mixed(stride).eval()
    calls = _count_calls(mixed)
    x = torch.randn(N, C, H, H, dtype=torch.float64)
    w = torch.softmax(torch.randn(N_OPS, dtype=torch.float64), 0)
    out = mixed(x, w, active=[k])
    assert calls == [1 if i == k else 0 for i in range(N_OPS)]
    torch.testing.assert_close(out, w[k] * mixed.candidates[k](x))
    # ... and equals the full mix when every other weight is zero.
    w_only = torch.zeros_like(w)
    w_only[k] = w[k]
    torch.testing.assert_close(out, mixed(x, w_only))


def test_full_mix_computes_every_op_but_none() -> None:
    torch.manual_seed(0)
    mixed = _mixed(1).eval()
    calls = _count_calls(mixed)
    mixed(torch.randn(N, C, H, H, dtype=torch.float64), torch.rand(N_OPS, dtype=torch.float64))
    assert calls == [0] + [1] * (N_OPS - 1)


def test_active_subset_equals_zeroed_weights() -> None:
    torch.manual_seed(0)
    mixed = _mixed(2).eval()
    calls = _count_calls(mixed)
    x = torch.randn(N, C, H, H, dtype=torch.float64)
    w = torch.softmax(torch.randn(N_OPS, dtype=torch.float64), 0)
    active = [0, 3, 6]
    out = mixed(x, w, active=active)
    assert calls == [0, 0, 0, 1, 0, 0, 1, 0]
    w_zeroed = torch.zeros_like(w)
    w_zeroed[active] = w[active]
    torch.testing.assert_close(out, mixed(x, w_zeroed))


@pytest.mark.parametrize("stride", [1, 2])
def test_active_only_none_gives_zeros_with_gradient_path(stride: int) -> None:
    torch.manual_seed(0)
    mixed = _mixed(stride).eval()
    calls = _count_calls(mixed)
    x = torch.randn(N, C, H, H, dtype=torch.float64)
    w = torch.rand(N_OPS, dtype=torch.float64, requires_grad=True)
    out = mixed(x, w, active=[0])
    assert calls == [0] * N_OPS
    assert out.shape == _expected_shape(stride)
    assert torch.count_nonzero(out) == 0
    out.sum().backward()
    assert w.grad is not None and torch.count_nonzero(w.grad) == 0


@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weighted_sum_matches_stack_reference(n: int, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    outputs = [torch.randn(2, 3, 5, 4, dtype=dtype) for _ in range(n)]
    weights = torch.randn(n, dtype=dtype)
    ref = (torch.stack(outputs) * weights.view(-1, 1, 1, 1, 1)).sum(0)
    torch.testing.assert_close(weighted_sum(outputs, weights), ref)
    torch.testing.assert_close(kernels.mix(outputs, weights, "torch"), ref)


def test_weighted_sum_gradients() -> None:
    torch.manual_seed(0)
    outputs = [torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    weights = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w, *o: weighted_sum(list(o), w), (weights, *outputs))


def test_weighted_sum_rejects_length_mismatch() -> None:
    outputs = [torch.zeros(2, 2) for _ in range(3)]
    with pytest.raises(ValueError, match="3 outputs but 2 weights"):
        weighted_sum(outputs, torch.ones(2))


def test_resolve_backend() -> None:
    assert kernels.resolve_backend("torch") == "torch"
    assert kernels.resolve_backend("auto") in kernels.BACKENDS
    with pytest.raises(ValueError) as info:
        kernels.resolve_backend("bogus")
    msg = str(info.value)
    assert "bogus" in msg
    for name in kernels.BACKENDS:
        assert name in msg


# --- candidates of one edge share the ReLU of its input -------------------------------------


def _leading_relus(mixed: MixedOp) -> list[int]:
    """Call counts of each candidate's own leading ReLU module (-1: it has none)."""
    counts = []
    for cand in mixed.candidates:
        if not hasattr(cand, "after_relu"):
            counts.append(-1)
            continue
        relus = [m for m in cand.modules() if isinstance(m, torch.nn.ReLU)]
        counts.append(0)
        k = len(counts) - 1

        def fn(module, inputs, output, k=k) -> None:
            counts[k] += 1

        relus[0].register_forward_hook(fn)
    return counts


@pytest.mark.parametrize("stride", [1, 2])
def test_candidates_share_the_edge_relu_with_identical_results(stride: int) -> None:
    """sep/dil convs (and FactorizedReduce on stride-2 edges) start with the same ReLU of the
    edge input: it is computed once, the values equal each candidate run whole, and the
    gradients match (they only add up in another order)."""
    torch.manual_seed(0)
    mixed = _mixed(stride).train()
    x = torch.randn(N, C, H + 1, H + 1, dtype=torch.float64, requires_grad=True)
    shared_first = [i for i, f in enumerate(mixed.relu_first) if f]
    assert len(shared_first) == (5 if stride == 2 else 4)  # + FactorizedReduce at stride 2
    counts = _leading_relus(mixed)
    outputs, idx = mixed.candidate_outputs(x)
    assert all(counts[i] == 0 for i in shared_first)  # the candidates' own ReLUs never ran
    expected = [mixed.candidates[i](x) for i in mixed.computed]
    assert all(counts[i] == 1 for i in shared_first)
    for out, ref in zip(outputs, expected, strict=True):
        assert torch.equal(out, ref)
    g = [torch.randn_like(o) for o in outputs]
    shared = torch.autograd.grad(outputs, [x, *mixed.parameters()], g)
    whole = torch.autograd.grad(expected, [x, *mixed.parameters()], g)
    for a, b in zip(shared, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_a_single_sampled_candidate_runs_whole() -> None:
    """GDAS' one sampled op has nothing to share its ReLU with: it runs as it is."""
    mixed = _mixed(1)
    k = DARTS_OPS.index("sep_conv_3x3")
    counts = _leading_relus(mixed)
    mixed.candidate_outputs(torch.randn(N, C, H, H, dtype=torch.float64), [k])
    assert counts[k] == 1
