"""SNAS' resource constraint (Xie, Zheng, Liu, Lin, "SNAS: Stochastic Neural Architecture
Search", ICLR 2019, sec. 2.4).

The arch objective gets λ · E_{Z ~ p_α}[C(Z)], with C(Z) = Σ_edges Z_e · c the cost of the
sampled child network: Z_e the one-hot op choice of edge e and c a per-op cost: parameter
count (``params``), multiply-adds (``flops``) or memory access cost (``mac``: input, output
and weight elements of each conv/pool layer). C is not differentiable in the discrete Z, so, as
in the paper, its gradient is the score-function (policy-gradient) estimate
∇α E[C] ≈ C(Z) ∇α log p_α(Z), with Z drawn by Gumbel-max from the regularizer's own seeded
stream (an independent draw from the forward pass'). ``estimator="expected"`` uses the exact
linear expectation Σ_e Σ_k p_ek c_k instead (lower variance; C is linear for params/FLOPs).

Costs are measured once per space on each op at the space's stride-1 cell size (C channels at
the input resolution) and divided by the largest, so λ is unitless. ``none`` costs 0.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.core.arch import split_arch
from nas.strategies.protocols import Regularizer
from supernet.ops import OPS, build_op

COST_KINDS = ("params", "flops", "mac")


def op_costs(ops: tuple[str, ...], C: int, size: tuple[int, int], kind: str) -> torch.Tensor:
    """``[num_ops]`` cost of each op (stride 1, ``C`` channels, ``size`` = (H, W))."""
    if kind not in COST_KINDS:
        raise ValueError(f"Unknown resource cost {kind!r}; valid: {', '.join(COST_KINDS)}.")
    costs = []
    for name in ops:
        if name == "none":
            costs.append(0.0)
            continue
        op = build_op(name, C, C, 1, affine=False)
        if kind == "params":
            costs.append(float(sum(p.numel() for p in op.parameters())))
            continue
        total = 0

        def hook(m: nn.Module, inputs, output) -> None:
            nonlocal total
            if kind == "flops" and isinstance(m, nn.Conv2d):
                kh, kw = m.kernel_size
                total += output.numel() * (m.in_channels // m.groups) * kh * kw
            elif kind == "mac" and isinstance(
                m, (nn.Conv2d, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd)
            ):
                total += inputs[0].numel() + output.numel()
                total += sum(p.numel() for p in m.parameters(recurse=False))

        handles = [m.register_forward_hook(hook) for m in op.modules()]
        with torch.no_grad():
            op.eval()(torch.zeros(1, C, *size))
        for h in handles:
            h.remove()
        costs.append(float(total))
    out = torch.tensor(costs)
    return out / out.max().clamp_min(1e-12)


class ResourceCost(Regularizer):
    """``scale · E_Z[C(Z)]`` over every cell type; see the module docstring.

    Args:
        scale: λ, the constraint's weight in the arch objective.
        cost: ``params``, ``flops`` or ``mac``.
        estimator: ``reinforce`` (the paper's score function with a sampled one-hot) or
            ``expected`` (the exact expectation under softmax(α)).
    """

    def __init__(self, scale: float = 1e-3, cost: str = "flops", estimator: str = "reinforce"):
        if estimator not in ("reinforce", "expected"):
            raise ValueError(f"estimator must be 'reinforce' or 'expected', got {estimator!r}.")
        if cost not in COST_KINDS:
            raise ValueError(f"Unknown resource cost {cost!r}; valid: {', '.join(COST_KINDS)}.")
        self.scale, self.cost, self.estimator = scale, cost, estimator
        self.costs: torch.Tensor | None = None

    def setup(self, seed: int = 0, space=None, **_) -> None:
        self.generator = torch.Generator().manual_seed(seed + 3571)
        if space is not None:
            unknown = [op for op in space.ops if op != "none" and op not in OPS]
            if unknown:
                raise ValueError(
                    f"SNAS' resource cost prices the cell ops of supernet/ops.py; search space "
                    f"{space.name!r} has ops {unknown} without such a price. It applies to the "
                    "cell spaces (darts, nb201)."
                )
            self.costs = op_costs(space.ops, space.C, tuple(space.input_shape[1:]), self.cost)

    def __call__(self, arch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.costs is None:
            raise RuntimeError("ResourceCost needs setup(space=...) before use.")
        alphas, _ = split_arch(arch)
        total = 0.0
        for a in alphas.values():
            c = self.costs.to(device=a.device, dtype=a.dtype)
            logp = torch.log_softmax(a, dim=-1)  # [edges, ops]
            if self.estimator == "expected":
                total = total + (logp.exp() * c).sum()
                continue
            u = torch.rand(a.shape, generator=self.generator, dtype=torch.float64)
            gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-10))).to(a)
            z = (logp.detach() + gumbel).argmax(-1, keepdim=True)  # one-hot Z ~ p_α, [edges, 1]
            cost_z = c[z].detach()  # C(Z_e) per edge
            total = total + (logp.gather(-1, z) * cost_z).sum()
        return self.scale * total

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()} if hasattr(self, "generator") else {}

    def load_state_dict(self, state: dict) -> None:
        if "generator" in state:
            self.generator = torch.Generator()
            self.generator.set_state(state["generator"])
