"""DrNAS: Dirichlet mixing weights (Chen, Wang, Cheng, Tang, Hsieh, "DrNAS: Dirichlet Neural
Architecture Search", ICLR 2021, sec. 3.1-3.2).

Each edge's mixing weights θ ~ Dir(β) with concentration β = ELU(α) + 1 > 0, drawn once per
forward pass with the pathwise (implicit reparameterization) gradient of
``torch.distributions.Dirichlet.rsample``, so the α gradient flows through the sample.

The probabilities that are logged and discretized are softmax(α), as the official code's
``genotype()`` and ``show_arch_parameters()`` compute them (xiangning-chen/DrNAS,
``DARTS-space/model_search.py`` and ``201-space/search_model.py``: ``process_step_matrix(α,
'softmax', mask)``); ``probabilities="mean"`` gives the Dirichlet mean β / Σβ instead. Both have
the same order of ops on an edge (ELU + 1 is increasing), so argmax and op pruning agree; the
DARTS top-2 ranking of a node's edges differs, since it compares values across edges.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet

from nas.strategies.samplers.base import Mixing, Sampler


def concentration(alpha: torch.Tensor) -> torch.Tensor:
    """β = ELU(α) + 1."""
    return F.elu(alpha) + 1.0


PROBABILITIES = ("softmax", "mean")


class DirichletSampler(Sampler):
    """θ ~ Dir(ELU(α) + 1) per edge, every op computed.

    Args:
        probabilities: what ``probabilities`` (selection, logs) returns: ``softmax`` (softmax(α),
            the official genotype rule) or ``mean`` (the Dirichlet mean).

    The draw runs on α's device inside ``torch.random.fork_rng`` with the sampler's own saved
    RNG state for that device (``Dirichlet.rsample`` takes no generator), so the global streams
    are untouched and no value is copied to the host (no device sync in the step).
    """

    seed = 0

    def __init__(self, probabilities: str = "softmax"):
        if probabilities not in PROBABILITIES:
            raise ValueError(
                f"DirichletSampler probabilities must be one of {', '.join(PROBABILITIES)}, "
                f"got {probabilities!r}."
            )
        self.probabilities_rule = probabilities

    padded = False  # whether the space pads rows (known when set up: no host sync per step)

    def setup(self, seed: int = 0, space=None, **_) -> None:
        self.seed = seed
        self.padded = space is not None and space.column_masks() is not None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 104729)
            self.rng_state = torch.get_rng_state()
        self.device_rng_states: dict[str, torch.Tensor] = {}

    def __call__(self, alphas: dict[str, torch.Tensor]) -> Mixing:
        if not hasattr(self, "rng_state"):
            self.setup()
        device = next(iter(alphas.values())).device
        weights = {}
        with self._own_stream(device):
            for cell, a in alphas.items():
                # Columns a row does not have come as -inf (``Strategy.masked``): drawn at
                # concentration 1 and dropped, the rest renormalized, which is exactly Dir of the
                # real columns' concentrations (a Dirichlet's renormalized sub-vector).
                # No argument validation: it reads a flag back to the host.
                if not self.padded:
                    weights[cell] = Dirichlet(concentration(a), validate_args=False).rsample()
                    continue
                real = torch.isfinite(a)
                conc = torch.where(real, concentration(a.masked_fill(~real, 0.0)), 1.0)
                theta = Dirichlet(conc, validate_args=False).rsample() * real
                weights[cell] = theta / theta.sum(-1, keepdim=True)
        return Mixing(weights)

    @contextmanager
    def _own_stream(self, device: torch.device):
        """Runs the body on this sampler's saved RNG state of ``device``, then saves it."""
        if device.type == "cpu":
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(self.rng_state)
                yield
                self.rng_state = torch.get_rng_state()
            return
        accel = getattr(torch, device.type)
        index = device.index if device.index is not None else accel.current_device()
        key = f"{device.type}:{index}"
        if key not in self.device_rng_states:
            generator = torch.Generator(device=device).manual_seed(self.seed + 104729)
            self.device_rng_states[key] = generator.get_state()
        with torch.random.fork_rng(devices=[index], device_type=device.type):
            accel.set_rng_state(self.device_rng_states[key], index)
            yield
            self.device_rng_states[key] = accel.get_rng_state(index)

    def probabilities(self, alphas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for cell, a in alphas.items():
            a = a.detach().float()
            if self.probabilities_rule == "softmax":
                out[cell] = a.softmax(-1)
            else:
                conc = concentration(a)  # 0 at a masked column (-inf)
                out[cell] = conc / conc.sum(-1, keepdim=True)
        return out

    def state_dict(self) -> dict:
        if not hasattr(self, "rng_state"):
            return {}
        return {"rng_state": self.rng_state, "device_rng_states": dict(self.device_rng_states)}

    def load_state_dict(self, state: dict) -> None:
        if "rng_state" in state:
            self.rng_state = state["rng_state"]
            self.device_rng_states = dict(state.get("device_rng_states", {}))
