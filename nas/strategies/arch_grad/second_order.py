"""Second-order DARTS (Liu et al., ICLR 2019, sec. 2.3, eq. 7-8).

∇_α L_val(w', α) − ξ ∇²_{α,w} L_train(w, α) ∇_{w'} L_val(w', α), with the virtual step
w' = one step of the weight optimizer's own SGD update (momentum and weight decay included,
ξ = its current learning rate) and the Hessian-vector product by central finite differences,
w± = w ± ε v, ε = 0.01 / ‖v‖.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from nas.search import SearchModule

Batch = tuple[torch.Tensor, torch.Tensor]


class SecondOrder:
    """The unrolled hypergradient of DARTS (second order)."""

    def __init__(self, r: float = 0.01):
        self.r = r

    @staticmethod
    def virtual_step(
        optimizer: torch.optim.Optimizer,
        params: dict[str, torch.Tensor],
        grads: list[torch.Tensor],
    ) -> tuple[dict[str, torch.Tensor], float]:
        """w' = w − ξ (μ·buf + ∇w + λw) with the SGD optimizer's own state; returns (w', ξ)."""
        if not isinstance(optimizer, torch.optim.SGD):
            raise TypeError(
                f"Second-order DARTS unrolls an SGD step, but the weight optimizer is "
                f"{type(optimizer).__name__}. Use torch.optim.SGD for strategy=darts_2nd."
            )
        group = optimizer.param_groups[0]
        xi, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        new = {}
        with torch.no_grad():
            for (name, w), g in zip(params.items(), grads):
                step = g + wd * w
                buf = optimizer.state.get(w, {}).get("momentum_buffer")
                if buf is not None and mu:
                    step = step + mu * buf
                new[name] = w - xi * step
        return new, xi

    def __call__(
        self, module: SearchModule, train: Batch, val: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fills ``alpha.grad`` and returns the validation loss (at w') and logits."""
        net = module.supernet
        params = dict(net.named_parameters())
        arch = module.arch.as_dict()
        alphas = list(arch.values())  # α and, with edge normalization, β

        # The virtual step needs ∇w only: α enters as a constant (no softmax graph to α).
        train_loss, _ = module.loss(train, {k: a.detach() for k, a in arch.items()})
        grads = torch.autograd.grad(train_loss, list(params.values()), materialize_grads=True)
        unrolled, xi = self.virtual_step(module.weight_optimizer, params, list(grads))
        for w in unrolled.values():
            w.requires_grad_(True)

        val_loss, val_logits = module.loss(val, arch, params=unrolled)
        val_loss = val_loss + module.arch_regularization()
        out = torch.autograd.grad(val_loss, [*alphas, *unrolled.values()], materialize_grads=True)
        d_alpha, v = out[: len(alphas)], out[len(alphas) :]

        eps = self.r / torch.cat([t.reshape(-1) for t in v]).norm()
        hvp_terms = []
        for sign in (1.0, -1.0):
            shifted = {n: (w.detach() + sign * eps * dv) for (n, w), dv in zip(params.items(), v)}
            loss, _ = module.loss(train, arch, params=shifted)
            hvp_terms.append(torch.autograd.grad(loss, alphas, materialize_grads=True))
        for a, da, gp, gm in zip(alphas, d_alpha, *hvp_terms):
            a.grad = da - xi * (gp - gm) / (2 * eps)
        return val_loss.detach(), val_logits.detach()
