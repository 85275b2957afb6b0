"""``zen``: the Zen-score (data-free).

Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Image Recognition" (ICCV 2021),
following their official code (idstcv/ZenNAS, ``ZeroShotProxy/compute_zen_score.py``, as their
evolution search calls it: one repeat, batch size 64, mixup γ = α = 0.01):

1. every conv and linear weight is drawn from N(0, 1) and its bias set to 0; batch norm (and
   group norm) weights to 1, biases to 0 (their ``network_weight_gaussian_init``; the draws use
   a generator seeded with ``inputs.seed``), and the batch norms' running statistics are reset
   (theirs are those of a freshly built network);
2. x and ε are N(0, 1) batches of ``ZEN_BATCH_SIZE`` images of ``input_shape`` (same generator);
   the network runs on x and on x + α ε in train mode (batch statistics; each pass also moves
   the running statistics with the layer's momentum), in its own dtype. Their passes run
   without gradients; our pass on x builds a graph (one backward: which batch norms count, 4.),
   which costs the memory of a training step's forward pass;
3. Δ = mean over the batch of Σ_{c,h,w} |f(x) - f(x + α ε)|, f the feature map before global
   average pooling. Their code takes this L1 sum; the paper writes a Frobenius norm. We follow
   the code;
4. score = log Δ + Σ over the batch norms of log sqrt(mean over channels of ``running_var``),
   read after the two passes, as their code reads it. Only the batch norms the feature map
   depends on count (their ``forward_pre_GAP`` runs no others: not an auxiliary head's, nor
   any after the pooling); a batch norm without running statistics is skipped (as the
   ``try``/``except`` of the port in MeCo's repository does).

Their search scores plain networks with the residual links removed (``no_reslink=True``); we
score the network as built. The feature map before global pooling: the input of the last
``nn.AdaptiveAvgPool2d(1)`` called (the DARTS and NAS-Bench-201 children); without one, the last
4-d output of a module finished before the last ``nn.Linear`` call (a network that pools
functionally, as mbconv's ``h.mean((2, 3))``); without that either, a ``ValueError``.
Higher is better.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.common import hooked, kept_state, model_device_dtype

ZEN_BATCH_SIZE = 64
ALPHA = 0.01


def gaussian_init(model: nn.Module, generator: torch.Generator) -> None:
    """Zen-NAS's ``network_weight_gaussian_init``, with draws from ``generator`` (on the CPU)."""

    def normal_(t: torch.Tensor) -> None:
        t.copy_(torch.randn(t.shape, generator=generator, dtype=t.dtype))

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                normal_(m.weight)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                if m.weight is not None:
                    m.weight.fill_(1.0)
                if m.bias is not None:
                    m.bias.zero_()


def is_global_pool(m: nn.Module) -> bool:
    size = m.output_size if isinstance(m, nn.AdaptiveAvgPool2d) else None
    return size == 1 or size == (1, 1)


def pre_gap_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Runs ``model`` on ``x`` and returns its feature map before global average pooling (the
    rule of the module docstring)."""
    pooled: list[torch.Tensor] = []  # inputs of global pooling modules, in call order
    outputs: list[torch.Tensor] = []  # 4-d module outputs, in finishing order
    before_linear: list[int] = []  # len(outputs) at each nn.Linear call

    def output(m, args, out) -> None:
        if isinstance(out, torch.Tensor) and out.dim() == 4:
            outputs.append(out)

    handles = []
    for m in model.modules():
        if m is model:
            continue
        if is_global_pool(m):
            handles.append(m.register_forward_pre_hook(lambda m, args: pooled.append(args[0])))
        if isinstance(m, nn.Linear):
            handles.append(
                m.register_forward_pre_hook(lambda m, args: before_linear.append(len(outputs)))
            )
        handles.append(m.register_forward_hook(output))
    with hooked(handles):
        model(x)
    if pooled:
        return pooled[-1]
    if before_linear and before_linear[-1]:
        return outputs[before_linear[-1] - 1]
    raise ValueError(
        "Zero-cost proxy 'zen' needs the feature map before global average pooling: the network "
        f"({type(model).__name__}) calls no nn.AdaptiveAvgPool2d(1) and no module returns a 4-d "
        "map before its last nn.Linear."
    )


def _log(v: float) -> float:
    """The natural log, -inf at 0 and nan below (``math.log`` raises there)."""
    return math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)


def zen_score(inputs: ProxyInputs, batch_size: int = ZEN_BATCH_SIZE, alpha: float = ALPHA) -> float:
    model = inputs.model
    device, dtype = model_device_dtype(model, inputs)
    generator = torch.Generator().manual_seed(inputs.seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with kept_state(model, grad_weights=False):
        gaussian_init(model, generator)
        for m in norms:
            m.reset_running_stats()
        model.train()
        shape = (batch_size, *inputs.input_shape)
        x = torch.randn(shape, generator=generator, dtype=dtype).to(device)
        eps = torch.randn(shape, generator=generator, dtype=dtype).to(device)
        bn_outputs: dict[nn.Module, torch.Tensor] = {}
        handles = [
            m.register_forward_hook(lambda m, args, out: bn_outputs.setdefault(m, out))
            for m in norms
        ]
        with hooked(handles):
            # The pass on x builds a graph to tell which batch norms the feature map depends on.
            fmap = pre_gap_features(model, x.requires_grad_(True))
        live = [m for m, out in bn_outputs.items() if out.requires_grad]
        reached = (
            torch.autograd.grad(fmap.sum(), [bn_outputs[m] for m in live], allow_unused=True)
            if live and fmap.requires_grad
            else [None] * len(live)
        )
        fmap = fmap.detach()
        with torch.no_grad():
            mixed = pre_gap_features(model, x.detach() + alpha * eps)
        delta = float((fmap - mixed).abs().flatten(1).sum(1).mean())
        bn_term = 0.0
        for m, grad in zip(live, reached):
            if grad is not None and m.running_var is not None:
                bn_term += 0.5 * _log(float(m.running_var.mean()))
    return _log(delta) + bn_term


def zen(inputs: ProxyInputs) -> float:
    return zen_score(inputs)


register_proxy(
    "zen",
    zen,
    data_free=True,
    paper="Lin et al., Zen-NAS, ICCV 2021 (official code: L1 distance, BN running variances)",
)
