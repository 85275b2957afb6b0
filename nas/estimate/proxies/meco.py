"""``meco``: the minimum eigenvalue of the feature maps' channel correlation.

Jiang et al., "MeCo: Zero-Shot NAS with One Data and Single Forward Pass via Minimum Eigenvalue
of Correlation" (NeurIPS 2023), following their code (HamsterMimi/MeCo,
``correlation/NAS_Bench_201.py``, measure ``meco``): one forward pass on the first batch of
``inputs.batches`` (the network in the mode it is given: train); for every module's output
feature map (a forward hook on every module, containers included, but not the network itself),
the map of the batch's first sample, C x H x W, is read as C channels observed at H·W
positions; P is its C x C Pearson correlation matrix (``corrcoef``; entries that are nan, from a
constant channel or a single position, set to 0) and λ_min(P) its smallest eigenvalue;

    score = Σ over the modules' maps of λ_min(P)   (non-finite λ left out).

Outputs that are not feature maps (fewer than 3 dimensions: logits, pooled vectors) are skipped:
in their code such an output gives a zero or constant matrix whose λ_min is 0. A map that is the
output of nested modules (a ``Sequential`` and its last layer) counts once per module, as their
hook on every module counts it. The paper uses a single image (their default batch size 1); with
a larger first batch only its first sample is read, as their code reads it, while train-mode
batch norm normalises over the whole batch. P is symmetric: ``torch.linalg.eigvalsh`` (theirs:
the real parts of ``eig``), in double precision. Higher is better.
"""

from __future__ import annotations

import math

import torch

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.common import hooked, kept_state, no_batches_message


def min_correlation_eigenvalue(feature_map: torch.Tensor) -> float:
    """λ_min of the channel correlation matrix of one sample's map (C x ...)."""
    channels = feature_map.shape[0]
    observations = feature_map.reshape(channels, -1).to(torch.float64)
    if observations.shape[1] < 2:  # a single position: every entry nan, set to 0
        return 0.0
    corr = torch.corrcoef(observations)
    corr = torch.nan_to_num(corr.reshape(channels, channels), nan=0.0, posinf=0.0, neginf=0.0)
    try:
        return float(torch.linalg.eigvalsh(corr)[0])
    except torch.linalg.LinAlgError:  # no convergence: non-finite, left out of the sum
        return math.nan


def meco(inputs: ProxyInputs) -> float:
    if not inputs.batches:
        raise ValueError(no_batches_message("meco"))
    images = inputs.batches[0][0]
    model = inputs.model
    maps: list[torch.Tensor] = []

    def keep(m, args, out) -> None:
        if isinstance(out, torch.Tensor) and out.dim() >= 3:
            maps.append(out[0].detach().clone())

    handles = [m.register_forward_hook(keep) for m in model.modules() if m is not model]
    with kept_state(model, grad_weights=False), hooked(handles), torch.no_grad():
        model(images)
    values = [min_correlation_eigenvalue(fm) for fm in maps]
    return float(sum(v for v in values if math.isfinite(v)))


register_proxy(
    "meco",
    meco,
    data_free=False,
    paper="Jiang et al., MeCo, NeurIPS 2023 (λ_min of channel correlation, first sample)",
)
