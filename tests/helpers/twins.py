"""Two networks that must compute the same thing (grouped and per-edge cells, Triton and
PyTorch kernels): outputs, α and weight gradients, and buffers after a training pass."""

from __future__ import annotations

import torch
from torch import nn


def random_weights(edges: int, ops: int, seed: int, device="cpu") -> dict[str, torch.Tensor]:
    """Softmax mixing weights of both DARTS cell types, leaves that take a gradient."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.softmax(torch.randn(edges, ops, generator=g), -1).to(device).requires_grad_()
        for k in ("normal", "reduce")
    }


def close_to_scale(a: torch.Tensor, b: torch.Tensor, msg: str = "") -> None:
    # The 1e-6 floor: a one-channel conv feeding a batch norm without affine has a gradient of
    # exactly zero (BN is scale-invariant); computed, it is rounding noise of ~1e-7 either way.
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()) + 1e-6, msg=msg)


def assert_twins_agree(
    a: nn.Module, b: nn.Module, x: torch.Tensor, seed: int = 0, shape=(14, 8), **kw
) -> None:
    wa = random_weights(*shape, seed, device=x.device)
    if shape[0] == 6:  # NAS-Bench-201: one cell type
        wa = {"cell": wa["normal"]}
    wb = {k: v.detach().clone().requires_grad_() for k, v in wa.items()}
    ya, yb = a(x, wa, **kw), b(x, wb, **kw)
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    # Gradients: float rounding of the convolution algorithms, amplified by batch norm over a
    # few values per channel, measured against each gradient's own scale.
    for k in wa:
        close_to_scale(wa[k].grad, wb[k].grad)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        close_to_scale(p.grad, q.grad, msg=name)
    for (name, s), t in zip(a.named_buffers(), b.buffers()):
        if s.is_floating_point():
            torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-6, msg=name)
        else:
            assert torch.equal(s, t), name  # num_batches_tracked, indices
