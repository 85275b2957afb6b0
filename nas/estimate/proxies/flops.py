"""``flops``: the multiply-accumulates of one forward pass of one image (data-free).

The cost measure NAS papers report as "FLOPs" (MACs of the convolution and linear layers, eval
mode, so an auxiliary head does not count; ``macs.conv_linear_macs``); as a zero-cost baseline it
is one of Abdelfattah et al.'s, "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021), Table 1.
Higher is better: a baseline that bets on bigger networks.
"""

from __future__ import annotations

from nas.estimate.proxies.base import ProxyInputs, register_proxy
from nas.estimate.proxies.macs import conv_linear_macs


def flops(inputs: ProxyInputs) -> float:
    return float(conv_linear_macs(inputs.model, inputs.input_shape))


register_proxy(
    "flops",
    flops,
    data_free=True,
    paper="Abdelfattah et al., Zero-Cost Proxies for Lightweight NAS, ICLR 2021 (baseline)",
)
