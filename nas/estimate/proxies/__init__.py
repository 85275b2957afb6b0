"""Zero-cost proxies: training-free scores of a freshly initialised child network, one file per
proxy (``base`` holds the contract: ``ProxyInputs``, ``register_proxy``, ``get_proxy``).
Importing this package registers every built-in proxy."""

from nas.estimate.proxies import (
    fisher,
    flops,
    grad_norm,
    grasp,
    jacov,
    l2_norm,
    meco,
    nwot,
    params,
    snip,
    synflow,
    zen,
    zico,
)
from nas.estimate.proxies.base import (
    PROXIES,
    Proxy,
    ProxyInputs,
    get_proxy,
    logits_of,
    register_proxy,
)

__all__ = [
    "PROXIES",
    "Proxy",
    "ProxyInputs",
    "fisher",
    "flops",
    "get_proxy",
    "grad_norm",
    "grasp",
    "jacov",
    "l2_norm",
    "logits_of",
    "meco",
    "nwot",
    "params",
    "register_proxy",
    "snip",
    "synflow",
    "zen",
    "zico",
]
