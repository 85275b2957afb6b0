"""DrNAS' regularizer (Chen et al., "DrNAS: Dirichlet Neural Architecture Search", ICLR 2021,
eq. 2): λ · Σ_edges KL(Dir(β) ‖ Dir(β̂)) with the concentration β = ELU(α) + 1 and an
all-ones anchor β̂ (the uniform Dirichlet); λ = 1e-3 in the authors' code.
"""

from __future__ import annotations

import torch
from torch.distributions import Dirichlet, kl_divergence

from nas.core.arch import split_arch
from nas.strategies.protocols import Regularizer
from nas.strategies.samplers.dirichlet import concentration


class DirichletKL(Regularizer):
    """``scale * sum KL(Dir(ELU(α)+1) || Dir(anchor))`` over every edge of every cell type."""

    def __init__(self, scale: float = 1e-3, anchor: float = 1.0):
        self.scale, self.anchor = scale, anchor

    def __call__(self, arch: dict[str, torch.Tensor]) -> torch.Tensor:
        alphas, _ = split_arch(arch)
        total = 0.0
        for a in alphas.values():
            conc = concentration(a)
            # No argument validation: it reads a flag back to the host every step.
            prior = Dirichlet(torch.full_like(conc, self.anchor), validate_args=False)
            total = total + kl_divergence(Dirichlet(conc, validate_args=False), prior).sum()
        return self.scale * total
