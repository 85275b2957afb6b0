"""``grasp``: Gradient Signal Preservation.

Wang et al., "Picking Winning Tickets Before Training by Preserving Gradient Flow" (ICLR 2020),
as a NAS proxy in Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021). We
follow Abdelfattah et al.'s ``grasp`` measure (temperature T = 1, one iteration): g = dL/dθ over
the conv and linear weights θ on the data batch (``inputs.batches`` concatenated), Hg the
Hessian-gradient product by double backpropagation (the gradient of z = Σ stopgrad(g)·dL/dθ),
score = Σ -θ ⊙ Hg. Their first pass (for g) and second (with a graph) run on the same batch;
we take g from the one graph-building pass, the same values.

Sign: GraSP prunes the weights with the largest θ ⊙ Hg; Abdelfattah et al. negate it, as
accuracy correlated negatively with the unnegated sum. With the minus, higher is better.
"""

from __future__ import annotations

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.common import data_batch, kept_state, layer_weights, loss_on, weight_grads


def grasp(inputs: ProxyInputs) -> float:
    images, labels = data_batch(inputs, "grasp")
    with kept_state(inputs.model):
        weights = layer_weights(inputs.model)
        grads = weight_grads(loss_on(inputs, images, labels), weights, create_graph=True)
        z = sum((g.detach() * g).sum() for g in grads if g.requires_grad)
        if not getattr(z, "requires_grad", False):  # the loss reaches no weight
            return 0.0
        hg = weight_grads(z, weights)
        return sum(float((-w.detach() * h).sum()) for w, h in zip(weights, hg))


register_proxy(
    "grasp",
    grasp,
    data_free=False,
    paper="Wang et al., GraSP, ICLR 2020; as in Abdelfattah et al., ICLR 2021 (-θ ⊙ Hg)",
)
