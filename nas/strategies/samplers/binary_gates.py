"""ProxylessNAS: binarized path gates (Cai, Zhu, Han, "ProxylessNAS: Direct Neural Architecture
Search on Target Task and Hardware", ICLR 2019, sec. 3.2, eq. 2-4).

Per row of α (an edge, or an mbconv layer) the path weights are p = softmax(α) and the binary
gates g are a one-hot sample of p: only the sampled path runs, with weight 1.

- Weight step (α a constant, gradients enabled): one path drawn from p (eq. 2); ``active``
  lists it alone.
- Arch step (α requires grad): the paper's two-path mode (sec. 3.2.1): ``arch_paths`` = 2 paths
  drawn from p by multinomial sampling without replacement, p renormalised over them
  (p̃ = softmax(α_S)), the gate set one-hot at one of them drawn from p̃. Both are computed
  (``active`` lists the two, gate values 1 and 0), so the supernet yields ∂L/∂g_j for each, and
  α gets the BinaryConnect-style estimate of eq. 4 over the sampled set S:

      ∂L/∂α_i = Σ_{j∈S} ∂L/∂g_j · p̃_j (δ_ij − p̃_i),   i ∈ S;   0 for the unsampled paths.

  ``BinaryGate`` is that estimator as an autograd function: its forward returns the one-hot
  gates unchanged, its backward maps the gate gradient to α by the formula above.
  After the α optimizer's step, ``after_arch_step`` shifts the sampled paths' α by a common
  offset so that their total softmax mass, hence every unsampled path's p, is what it was before
  the step ("we need to rescale the value of these two updated architecture parameters by
  multiplying a ratio to keep the path weights of unsampled paths unchanged", sec. 3.2.1).
  ``arch_paths`` = the number of ops gives the all-paths mode instead (every op computed, p̃ = p,
  no rescaling needed).
- No gradients (the supernet's validation pass): the current most likely path per row (argmax
  of p among the allowed ops), as the official ``validate()`` sets ``set_chosen_op_active``;
  ``eval_path="sample"`` draws one as in the weight step instead.

Which step is mixing is read from α itself: the arch-gradient modes pass α as parameters that
require grad, the weight step (``SearchModule.training_step``) passes ``α.detach()``, and
Lightning validates under ``no_grad``. Sampling uses the sampler's own seeded generator (state
in ``state_dict``): one host read per call, which the ``active`` lists need anyway.

Ops a space forbids on a row (``space.allowed_ops``: mbconv's ``zero`` on a layer that changes
the shape; ProxylessNAS has no zero candidate there) are never sampled.

Where the official code (mit-han-lab/proxylessnas, ``search/modules/mix_op.py``) differs: its
default ``--grad_binary_mode`` is ``full_v2`` (one active path, every path's gate gradient
recomputed in the backward; here ``arch_paths`` = the number of ops computes all paths
forward), and it drops a row's α gradient when the active path is the zero op; here that row's
estimate is kept (the zero gate's own gradient is 0 either way).
"""

from __future__ import annotations

from typing import Any

import torch

from nas.strategies.samplers.base import Mixing, Sampler

EVAL_PATHS = ("argmax", "sample")


class BinaryGate(torch.autograd.Function):
    """Forward: the one-hot gates. Backward: ProxylessNAS' eq. 4 over the sampled paths.

    Inputs: ``alpha`` ``[rows, ops]``; ``index`` ``[rows, k]`` the sampled ops of each row;
    ``gates`` ``[rows, ops]`` one-hot at the active op (a constant).
    """

    @staticmethod
    def forward(ctx, alpha: torch.Tensor, index: torch.Tensor, gates: torch.Tensor):
        ctx.save_for_backward(alpha, index)
        return gates.clone()

    @staticmethod
    def backward(ctx, grad_gates: torch.Tensor):
        alpha, index = ctx.saved_tensors
        dtype = torch.promote_types(alpha.dtype, torch.float32)  # half precision: in float32
        p = torch.softmax(alpha.detach().to(dtype).gather(-1, index), dim=-1)  # p̃ on S: [rows, k]
        g = grad_gates.to(dtype).gather(-1, index)  # ∂L/∂g_j, j ∈ S: [rows, k]
        # Σ_j g_j p̃_j (δ_ij − p̃_i) = p̃_i (g_i − Σ_j g_j p̃_j)
        sub = p * (g - (g * p).sum(-1, keepdim=True))
        grad_alpha = torch.zeros(alpha.shape, dtype=sub.dtype, device=alpha.device)
        grad_alpha.scatter_(-1, index, sub)
        return grad_alpha.to(alpha.dtype), None, None


def binary_gate(alpha: torch.Tensor, index: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """``BinaryGate.apply``: gates whose α gradient is ProxylessNAS' estimate over ``index``."""
    return BinaryGate.apply(alpha, index, gates)


class BinaryGateSampler(Sampler):
    """Binarized path gates: one sampled path per row (weight step), two in the arch step.

    Args:
        arch_paths: paths per row computed in the arch step (2: the paper's two-path mode; the
            number of ops: every path).
        eval_path: the path per row without gradients (supernet validation): ``argmax`` (the
            official code's chosen op) or ``sample``.
    """

    samples_paths = True

    def __init__(self, arch_paths: int = 2, eval_path: str = "argmax"):
        if arch_paths < 2:
            raise ValueError(
                f"BinaryGateSampler arch_paths must be >= 2 (the gate gradient of eq. 4 compares "
                f"the sampled paths; one path gets none), got {arch_paths}."
            )
        if eval_path not in EVAL_PATHS:
            raise ValueError(
                f"BinaryGateSampler eval_path must be one of {', '.join(EVAL_PATHS)}, "
                f"got {eval_path!r}."
            )
        self.arch_paths = arch_paths
        self.eval_path = eval_path
        self.space = None
        self._masks: dict[tuple[str, int, int], torch.Tensor] = {}
        # The arch step's sample, for the rescaling after the α step: per cell, (index
        # [rows, k], α_S before the step [rows, k]).
        self._pending: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def setup(self, seed: int = 0, space=None, **_: Any) -> None:
        super().setup(seed)
        if space is not None:
            self.space = space
        self._masks = {}
        self._pending = {}

    # ---- sampling ----------------------------------------------------------------------
    def _allowed(self, cell: str, rows: int, n_ops: int) -> torch.Tensor:
        """``[rows, ops]`` mask of the ops that may be sampled (``space.allowed_ops`` per row:
        every op but where the space forbids one; every op without a space)."""
        key = (cell, rows, n_ops)
        if key not in self._masks:
            mask = torch.ones(rows, n_ops, dtype=torch.bool)
            if self.space is not None:
                mask.zero_()
                for r in range(rows):
                    mask[r, list(self.space.allowed_ops(r))] = True
            self._masks[key] = mask
        return self._masks[key]

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        if self.generator is None:
            self.setup(space=self.space)
        first = next(iter(alphas.values()))
        if first.requires_grad and torch.is_grad_enabled():
            mode = "arch"
        elif not torch.is_grad_enabled() and self.eval_path == "argmax":
            mode = "argmax"
        else:
            mode = "weight"
        # One host read for every cell type: the ops to compute must be known on the host.
        host = torch.cat([a.detach().double() for a in alphas.values()]).cpu()
        weights, active, start = {}, {}, 0
        pending = {}
        for cell, a in alphas.items():
            rows, n_ops = a.shape
            logits = host[start : start + rows]
            start += rows
            mask = self._allowed(cell, rows, n_ops)
            probs = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
            if mode == "argmax":
                chosen = probs.argmax(-1, keepdim=True)  # [rows, 1]
                index, pick = chosen, chosen
            elif mode == "weight":
                pick = torch.multinomial(probs, 1, generator=self.generator)  # eq. 2
                index = pick
            else:
                k = min(self.arch_paths, int(mask.sum(-1).min()))
                index = torch.multinomial(probs, k, replacement=False, generator=self.generator)
                index = index.sort(-1).values
                p_sub = torch.softmax(logits.gather(-1, index), dim=-1)  # p̃ over the k paths
                pick = index.gather(-1, torch.multinomial(p_sub, 1, generator=self.generator))
            gates = torch.zeros(rows, n_ops, dtype=a.dtype, device=a.device)
            gates.scatter_(-1, pick.to(a.device), 1.0)
            if mode == "arch":
                dev_index = index.to(a.device)
                weights[cell] = binary_gate(a, dev_index, gates)
                if index.shape[1] < n_ops:
                    pending[cell] = (dev_index, a.detach().gather(-1, dev_index).clone())
            else:
                weights[cell] = gates
            active[cell] = index.tolist()
        if mode == "arch":
            self._pending = pending
        return Mixing(weights, active)

    # ---- after the α step ----------------------------------------------------------------
    @torch.no_grad()
    def after_arch_step(self, alphas: dict[str, torch.Tensor]) -> None:
        """Rescales the sampled paths' α so the unsampled paths keep their probabilities.

        With S the arch step's sampled paths of a row: α_S ← α_S − (logsumexp α_S^new −
        logsumexp α_S^old), so Σ_{j∈S} exp α_j is what it was before the step, while the step's
        change of p within S is kept: softmax(α)_i for i ∉ S is unchanged where the step left
        α_i alone (the gate gradient does; a latency penalty on softmax(α) moves every α, as in
        the official code, which rescales the same way).
        """
        for cell, (index, old) in self._pending.items():
            a = alphas[cell]
            new = a.gather(-1, index)
            dtype = torch.promote_types(a.dtype, torch.float32)
            offset = torch.logsumexp(new.to(dtype), -1, keepdim=True) - torch.logsumexp(
                old.to(dtype), -1, keepdim=True
            )
            a.scatter_(-1, index, new - offset.to(a.dtype))
        self._pending = {}
