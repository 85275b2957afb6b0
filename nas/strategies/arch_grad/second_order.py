"""Second-order DARTS (Liu et al., ICLR 2019, sec. 2.3, eq. 7-8).

∇_α L_val(w', α) − ∇²_{α,w} L_train(w, α) (ξ ⊙ ∇_{w'} L_val(w', α)), with the virtual step
w' = exactly the weight optimizer's next SGD step (weight decay, momentum, dampening and
Nesterov as ``torch.optim.SGD`` applies them, each parameter under its own group's lr) and
ξ = ∂w'/∂(∇w) per parameter: the learning rate times the gradient's coefficient in the update
(1 for plain momentum, 1 + μ(1 − dampening) under Nesterov). DARTS' official unroll (plain
momentum, no Nesterov) is the special case ξ = lr. The Hessian-vector product is a central
finite difference along u = ξ ⊙ v: w± = w ± ε u, ε = r / ‖u‖. Gradient clipping is not part
of the unroll, as in DARTS' code.
"""

from __future__ import annotations

import torch

from nas.strategies.protocols import ArchGradMode, ArchGradState, Batch


def _sgd_groups(optimizer: torch.optim.Optimizer) -> dict[int, dict]:
    """Each parameter's SGD group, by ``id``; anything but SGD is refused (it cannot be unrolled)."""
    if not isinstance(optimizer, torch.optim.SGD):
        raise TypeError(
            f"Second-order DARTS unrolls the weight optimizer's next step exactly and can do "
            f"so for torch.optim.SGD (momentum, dampening, Nesterov, weight decay) only, but "
            f"the weight optimizer is {type(optimizer).__name__}. Use torch.optim.SGD or a "
            f"first-order strategy (strategy=darts)."
        )
    return {id(p): g for g in optimizer.param_groups for p in g["params"]}


class SecondOrder(ArchGradMode):
    """The unrolled hypergradient of DARTS (second order)."""

    def __init__(self, r: float = 0.01):
        self.r = r

    @staticmethod
    def virtual_step(
        optimizer: torch.optim.Optimizer,
        params: dict[str, torch.Tensor],
        grads: list[torch.Tensor],
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """The SGD optimizer's next step from ``grads``, without touching its state.

        Returns (w', ξ): the stepped parameters, and per parameter ∂w'/∂g, the factor by
        which the step moves with the gradient (for the implicit term of the hypergradient).
        """
        groups = _sgd_groups(optimizer)
        new, xi = {}, {}
        with torch.no_grad():
            for (name, w), g in zip(params.items(), grads):
                group = groups[id(w)]
                lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
                damp, nesterov = group["dampening"], group["nesterov"]
                d_p = -g if group.get("maximize", False) else g
                sign = -1.0 if group.get("maximize", False) else 1.0
                if wd:
                    d_p = d_p + wd * w
                coef = 1.0  # ∂(update direction)/∂(d_p)
                if mu:
                    buf = optimizer.state.get(w, {}).get("momentum_buffer")
                    # torch's first step starts the buffer at d_p (no dampening), later ones
                    # blend: buf ← μ·buf + (1 − dampening)·d_p.
                    new_buf, buf_coef = (
                        (d_p, 1.0) if buf is None else (mu * buf + (1 - damp) * d_p, 1 - damp)
                    )
                    if nesterov:
                        d_p, coef = d_p + mu * new_buf, 1.0 + mu * buf_coef
                    else:
                        d_p, coef = new_buf, buf_coef
                new[name] = w - lr * d_p
                xi[name] = sign * lr * coef
        return new, xi

    def __call__(
        self, state: ArchGradState, train: Batch, val: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fills ``alpha.grad`` and returns the validation loss (at w') and logits."""
        net = state.supernet
        params = dict(net.named_parameters())
        arch = state.arch.as_dict()
        alphas = list(arch.values())  # α and, with edge normalization, β

        # The virtual step needs ∇w only: α enters as a constant (no softmax graph to α).
        train_loss, _ = state.loss(train, {k: a.detach() for k, a in arch.items()})
        grads = torch.autograd.grad(train_loss, list(params.values()), materialize_grads=True)
        unrolled, xi = self.virtual_step(state.weight_optimizer, params, list(grads))
        for w in unrolled.values():
            w.requires_grad_(True)

        val_loss, val_logits = state.loss(val, arch, params=unrolled)
        val_loss = state.arch_objective(val_loss)
        out = torch.autograd.grad(val_loss, [*alphas, *unrolled.values()], materialize_grads=True)
        d_alpha, v = out[: len(alphas)], out[len(alphas) :]

        # ∂w'/∂α = −ξ ⊙ ∂(∇w L_train)/∂α, so the implicit term is H_{αw} u with u = ξ ⊙ v.
        u = [xi[n] * dv for n, dv in zip(params, v)]
        norm = torch.cat([t.reshape(-1) for t in u]).norm()
        # u = 0 (lr 0 at a schedule's end): w' does not move with α, and the clamp keeps the
        # difference 0 / ε instead of 0 · ∞ (no host sync for a branch).
        eps = self.r / norm.clamp_min(torch.finfo(norm.dtype).tiny)
        hvp_terms = []
        for sign in (1.0, -1.0):
            shifted = {n: (w.detach() + sign * eps * du) for (n, w), du in zip(params.items(), u)}
            loss, _ = state.loss(train, arch, params=shifted)
            hvp_terms.append(torch.autograd.grad(loss, alphas, materialize_grads=True))
        for a, da, gp, gm in zip(alphas, d_alpha, *hvp_terms):
            a.grad = da - (gp - gm) / (2 * eps)
        return val_loss.detach(), val_logits.detach()
