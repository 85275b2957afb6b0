"""The mixed op: every candidate op of an edge, mixed by externally supplied weights.

α is never stored here: ``forward(x, weights)`` takes the mixing weights the strategy's sampler
produced, so one supernet serves every strategy (DARTS softmax, Gumbel, Dirichlet, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from supernet import kernels
from supernet.ops import build_search_op


class MixedOp(nn.Module):
    """All candidate ops of one edge.

    ``none`` is never computed: its output is zero, so it adds nothing to the sum and its
    weight gets a zero gradient either way.
    """

    def __init__(self, ops: Sequence[str], C: int, stride: int, kernel: str = "torch"):
        super().__init__()
        self.op_names = tuple(ops)
        self.kernel = kernel
        self.stride = stride
        self.candidates = nn.ModuleList(
            nn.Identity() if name == "none" else build_search_op(name, C, stride)
            for name in self.op_names
        )
        computed = [i for i, name in enumerate(self.op_names) if name != "none"]
        self.computed: tuple[int, ...] = tuple(computed)
        self.register_buffer(
            "computed_index", torch.tensor(computed, dtype=torch.long), persistent=False
        )

    def candidate_outputs(
        self, x: torch.Tensor, active: Sequence[int] | None = None
    ) -> tuple[list[torch.Tensor], list[int] | torch.Tensor]:
        """Outputs of the candidates to compute and their op indices.

        Args:
            x: the edge input.
            active: op indices the strategy keeps (e.g. GDAS' sampled op); ``None`` = all.
        """
        if active is None:
            return [self.candidates[i](x) for i in self.computed], self.computed_index
        idx = [i for i in active if self.op_names[i] != "none"]
        return [self.candidates[i](x) for i in idx], idx

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None
    ) -> torch.Tensor:
        """``sum_k weights[k] * op_k(x)`` over the computed candidates; weights: ``[num_ops]``."""
        outputs, idx = self.candidate_outputs(x, active)
        if not outputs:  # only `none` is active: a zero output that still depends on weights
            return x[:, :, :: self.stride, :: self.stride] * 0.0 * weights.sum()
        return kernels.mix(outputs, weights[idx], self.kernel)
