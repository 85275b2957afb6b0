"""``params``: the number of trainable parameters (data-free).

The parameters with ``requires_grad`` of the network that is tested, so an auxiliary head
(modules under ``auxiliary``, dropped at test time) is left out, as
``nas.hardware.profile.count_params`` leaves it out. A baseline of Abdelfattah et al., "Zero-Cost
Proxies for Lightweight NAS" (ICLR 2021), Table 1. Higher is better.
"""

from __future__ import annotations

from nas.estimate.proxies.base import ProxyInputs, register_proxy

AUXILIARY_PREFIX = "auxiliary"


def params(inputs: ProxyInputs) -> float:
    return float(
        sum(
            p.numel()
            for name, p in inputs.model.named_parameters()
            if p.requires_grad and not name.startswith(AUXILIARY_PREFIX)
        )
    )


register_proxy(
    "params",
    params,
    data_free=True,
    paper="Abdelfattah et al., Zero-Cost Proxies for Lightweight NAS, ICLR 2021 (baseline)",
)
