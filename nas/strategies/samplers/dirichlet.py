"""DrNAS: Dirichlet mixing weights (Chen, Wang, Cheng, Tang, Hsieh, "DrNAS: Dirichlet Neural
Architecture Search", ICLR 2021, sec. 3.1-3.2).

Each edge's mixing weights θ ~ Dir(β) with concentration β = ELU(α) + 1 > 0, drawn once per
forward pass with the pathwise (implicit reparameterization) gradient of
``torch.distributions.Dirichlet.rsample``, so the α gradient flows through the sample. The
selection uses the Dirichlet mean β / Σβ (same argmax as α).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet

from nas.strategies.samplers.base import Mixing, Sampler


def concentration(alpha: torch.Tensor) -> torch.Tensor:
    """β = ELU(α) + 1."""
    return F.elu(alpha) + 1.0


class DirichletSampler(Sampler):
    """θ ~ Dir(ELU(α) + 1) per edge, every op computed.

    The draw runs on the CPU inside ``torch.random.fork_rng`` with the sampler's own saved RNG
    state (``Dirichlet.rsample`` takes no generator), so the global streams are untouched.
    """

    def setup(self, seed: int = 0, **_) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 104729)
            self.rng_state = torch.get_rng_state()

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        if not hasattr(self, "rng_state"):
            self.setup()
        weights = {}
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            for cell, a in alphas.items():
                conc = concentration(a)
                theta = Dirichlet(conc.cpu()).rsample()
                weights[cell] = theta.to(a.device)
            self.rng_state = torch.get_rng_state()
        return Mixing(weights)

    def probabilities(self, alphas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for cell, a in alphas.items():
            conc = concentration(a.detach().float())
            out[cell] = conc / conc.sum(-1, keepdim=True)
        return out

    def state_dict(self) -> dict:
        return {"rng_state": self.rng_state} if hasattr(self, "rng_state") else {}

    def load_state_dict(self, state: dict) -> None:
        if "rng_state" in state:
            self.rng_state = state["rng_state"]
