"""CUDA graphs of the supernet's forward and backward passes (``cuda_graph=true``).

On a GPU the eager supernet is bound by the host, not the device: a first-order DARTS step
dispatches about 30,000 ATen operations (``experiments/bench/op_count.py``), and issuing them
takes about as long at batch 2 as at batch 64. A CUDA graph replays a captured pass with one
launch. ``torch.cuda.make_graphed_callables`` (PyTorch's partial-network capture) turns a
supernet call into one autograd node whose forward and backward are graph replays; the sampler,
the loss, both optimizers, gradient clipping and logging stay eager (a few dozen operations), so
the Lightning loop, its step counters and callbacks are unchanged.

One graph pair is captured per call signature: which inputs need a gradient (the arch step: the
mixing weights, with the network weights constant; the weight step: the network weights), the
shapes, dtypes and strides, and the autocast state. All graphs share one memory pool, which is
safe because they are replayed in the order they were captured (arch step, then weight step,
every step).

Exactness: ``make_graphed_callables`` runs warm-up passes before capturing, which move batch
norm's running statistics; they are put back afterwards, so every replayed step computes what
the eager step computes. A graph reads and writes fixed addresses: when the network's tensors
move or are resized (``.to()``, DrNAS' partial-channel change) the graphs are dropped and
recaptured. The outputs of a replay (logits, the gradients it hands to autograd) live in the
graph's memory until the next replay of the same graph, so only call sites that consume them
within the step ask for a graph (``SearchModule.loss(..., graphable=True)``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

MAX_SIGNATURES = 4  # arch + weight step, and once more each for a smaller last batch

GraphMaker = Callable[..., nn.Module]


class _FlatCall(nn.Module):
    """``net(x, weights, None, edge_weights)`` with every input a positional tensor, as
    ``make_graphed_callables`` needs; its parameters are the network's."""

    def __init__(self, net: nn.Module, weight_keys: Sequence[str], edge_keys: Sequence[str] | None):
        super().__init__()
        self.net = net
        self.weight_keys = tuple(weight_keys)
        self.edge_keys = None if edge_keys is None else tuple(edge_keys)

    def forward(self, x: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        n = len(self.weight_keys)
        weights = dict(zip(self.weight_keys, tensors[:n]))
        edge = None if self.edge_keys is None else dict(zip(self.edge_keys, tensors[n:]))
        return self.net(x, weights, None, edge)


class SupernetGraphs:
    """Runs eligible supernet calls as CUDA graph replays, capturing one graph pair per signature.

    Args:
        net: the supernet (``forward(x, weights, active, edge_weights)``).
        make_graphed: the capture function; ``torch.cuda.make_graphed_callables`` unless a test
            substitutes one that runs on the CPU.
    """

    def __init__(self, net: nn.Module, make_graphed: GraphMaker | None = None):
        self.net = net
        self.make_graphed = make_graphed
        self.pool = None
        self.graphs: dict[tuple, nn.Module] = {}
        self.fingerprint: tuple[int, ...] | None = None
        self._params: list[nn.Parameter] = []
        self.captures = 0  # graph pairs captured so far (tests, benchmarks)
        self._warned_full = False

    def __getstate__(self) -> dict[str, Any]:
        # Graphs are bound to this process's device memory: a copy (deepcopy, pickling)
        # captures its own on first use.
        state = dict(self.__dict__)
        state.update(pool=None, graphs={}, fingerprint=None, _params=[])
        return state

    def eligible(self, active: Any) -> bool:
        """A call is graphed in training mode with autograd on and a static path (no sampled
        ``active`` ops)."""
        return active is None and self.net.training and torch.is_grad_enabled()

    def __call__(
        self,
        x: torch.Tensor,
        weights: dict[str, torch.Tensor],
        edge_weights: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The supernet's logits for a static-path call, by graph replay."""
        flat = (x, *weights.values(), *(() if edge_weights is None else edge_weights.values()))
        if self._fingerprint() != self.fingerprint:  # moved or resized: graphs point elsewhere
            self.graphs.clear()
            self.pool = None
            self._params = list(self.net.parameters())
            self.fingerprint = self._fingerprint()
        key = _signature(
            flat, tuple(weights), None if edge_weights is None else tuple(edge_weights)
        )
        key += (any(p.requires_grad for p in self._params),)
        graphed = self.graphs.get(key)
        if graphed is None:
            if len(self.graphs) >= MAX_SIGNATURES:
                if not self._warned_full:
                    warnings.warn(
                        f"cuda_graph=true: more than {MAX_SIGNATURES} distinct supernet call "
                        "signatures (batch shapes or dtypes keep changing); further ones run eager.",
                        stacklevel=2,
                    )
                    self._warned_full = True
                return self.net(x, weights, None, edge_weights)
            graphed = self._capture(flat, weights, edge_weights)
            self.graphs[key] = graphed
        return graphed(*flat)

    def _fingerprint(self) -> tuple[int, ...]:
        # The parameters' addresses (about 0.1 ms for the DARTS supernet's 1,399, where walking
        # the module tree takes 11 ms): ``.to()`` and DrNAS' resizing give every parameter new
        # storage, and with it new buffers; ``load_state_dict`` copies in place.
        return tuple(map(torch.Tensor.data_ptr, self._params))

    def _capture(
        self,
        flat: tuple[torch.Tensor, ...],
        weights: dict[str, torch.Tensor],
        edge_weights: dict[str, torch.Tensor] | None,
    ) -> nn.Module:
        make_graphed = self.make_graphed or _cuda_make_graphed(flat[0].device)
        call = _FlatCall(
            self.net, tuple(weights), None if edge_weights is None else tuple(edge_weights)
        )
        sample = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in flat)
        buffers = [b.detach().clone() for b in self.net.buffers()]
        if self.pool is None and self.make_graphed is None:
            self.pool = torch.cuda.graph_pool_handle()
        with _autocast_without_cache(flat[0].device.type):
            graphed = make_graphed(call, sample, allow_unused_input=True, pool=self.pool)
        with torch.no_grad():  # the warm-up passes moved BN's running statistics: undo
            for b, saved in zip(self.net.buffers(), buffers):
                b.copy_(saved)
        self.captures += 1
        return graphed


def _signature(flat: Sequence[torch.Tensor], weight_keys: tuple, edge_keys: tuple | None) -> tuple:
    tensors = tuple((t.shape, t.dtype, t.stride(), t.requires_grad, t.device) for t in flat)
    device = flat[0].device.type
    autocast = (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
    return (tensors, weight_keys, edge_keys, autocast)


def _cuda_make_graphed(device: torch.device) -> GraphMaker:
    if device.type != "cuda":
        raise RuntimeError(
            f"cuda_graph=true captures the supernet as CUDA graphs, but it runs on {device}. "
            "Set cuda_graph=false, or train on a GPU (trainer.accelerator=gpu)."
        )
    return torch.cuda.make_graphed_callables


class _autocast_without_cache:
    """Autocast as it is, with its weight cache off, which capture requires (PyTorch docs of
    ``make_graphed_callables``); a no-op without autocast."""

    def __init__(self, device_type: str):
        self.device_type = device_type
        self.ctx = None

    def __enter__(self) -> None:
        if torch.is_autocast_enabled(self.device_type):
            dtype = torch.get_autocast_dtype(self.device_type)
            self.ctx = torch.autocast(self.device_type, dtype=dtype, cache_enabled=False)
            self.ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)
