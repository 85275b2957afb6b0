"""``jacov``: the correlation of input Jacobians.

Mellor et al., "Neural Architecture Search without Training", first version (arXiv:2006.04647
v1, 2020), as Abdelfattah et al.'s ``jacob_cov`` in "Zero-Cost Proxies for Lightweight NAS" (ICLR
2021), which we follow: on the data batch (``inputs.batches`` concatenated, the network in the
mode it is given, so train-mode batch norm), J_n = d(Σ logits)/d x_n is sample n's input gradient
(their ``y.backward(ones_like(y))``), flattened; Σ is the N x N correlation matrix of the J_n
(``numpy.corrcoef``, rows are samples), v its eigenvalues, k = 1e-5, and

    score = -Σ_i ( log(v_i + k) + 1 / (v_i + k) ).

Their code takes the eigenvalues with ``numpy.linalg.eig``; Σ is symmetric, so we use
``numpy.linalg.eigvalsh`` (real, the same values). A correlation matrix that is not finite (a
sample whose Jacobian is constant), an eigenvalue below -k or an eigensolver that does not
converge gives ``nan``, as their ``except`` does. A batch of one sample is refused (there is no
correlation to take). Higher is better.
"""

from __future__ import annotations

import numpy as np
import torch

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.common import data_batch, kept_state

K = 1e-5


def correlation_score(jacobians: np.ndarray, k: float = K) -> float:
    """-Σ (log(v + k) + 1/(v + k)) over the eigenvalues v of the rows' correlation matrix."""
    with np.errstate(all="ignore"):
        corr = np.corrcoef(jacobians)
        if not np.all(np.isfinite(corr)):
            return float("nan")
        try:
            v = np.linalg.eigvalsh(corr)
        except np.linalg.LinAlgError:  # no convergence
            return float("nan")
        return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def jacov(inputs: ProxyInputs) -> float:
    images, _ = data_batch(inputs, "jacov")
    if images.shape[0] < 2:
        raise ValueError(
            "Zero-cost proxy 'jacov' correlates the input Jacobians of the samples: it needs "
            f"at least 2 samples, got {images.shape[0]} (raise estimate.batches or the batch size)."
        )
    with kept_state(inputs.model):
        x = images.detach().clone().requires_grad_(True)
        (jac,) = torch.autograd.grad(inputs.logits(x).sum(), x)
    return correlation_score(jac.reshape(jac.shape[0], -1).double().cpu().numpy())


register_proxy(
    "jacov",
    jacov,
    data_free=False,
    paper="Mellor et al., arXiv:2006.04647v1; as Abdelfattah et al., ICLR 2021 (jacob_cov)",
)
