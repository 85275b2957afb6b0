"""Zero-cost proxies of the supernet under a fixed mixing: the score of Zero-Cost-PT
(``selection=pt selection.score=<proxy>``, ``nas/search/pt_selection.py``).

Xiang, Dudziak, Abdelfattah, Chau, Lane, Wen, "Zero-Cost Operation Scoring in Differentiable
Architecture Search", AAAI 2023 (zerocostptnas/zerocost_operation_score), and MeCo-PT in Jiang
et al., "MeCo", NeurIPS 2023 (HamsterMimi/MeCo): DARTS-PT's perturbation, each op's removal
from an edge's mixing scored with a zero-cost proxy of the supernet instead of its validation
accuracy.

A proxy (``nas/estimate/proxies``) scores a network ``model(x) -> logits``; ``FixedMixing``
makes one of the supernet: ``forward(x) = supernet(x, weights)`` with the mixing weights fixed,
as DARTS-PT's evaluation runs it. ``ZeroCostScore`` gives each evaluation:

- a copy of the supernet, never the supernet itself (a proxy may change the network it is
  given: synflow takes |θ|; a train-mode forward moves batch norm's running statistics): one
  copy is made, and before every evaluation its parameters and buffers take the supernet's
  current values (copied in place: cheaper than a deep copy per evaluation, and current after
  tuning). The copy runs per edge and eagerly (no grouped edges, no compiled
  candidates, every candidate op through its own modules, its own ReLU included): the same
  function, but the proxies' forward hooks (nwot's rectifiers, meco's feature maps) see every
  module, as in the official supernets, where every op owns its ReLU;
- the same batches (for every candidate of every decision) and the same random draws (torch's
  generators seeded with the run seed inside ``torch.random.fork_rng``, so the run's own random
  streams move on as if nothing had been drawn);
- in train mode (the proxies' contract: batch norm uses batch statistics).

Under DDP every rank must take the same decision, but a proxy is computed by one process (and
floating-point results need not agree bitwise across devices): rank 0 computes each score on
its batches, the full validation batches (not a rank's shard, so the score does not depend on
the world size), and broadcasts it (with whether it failed) to every rank.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from nas.core import distributed
from nas.core.registry import Registry
from nas.estimate.proxies import PROXIES, ProxyInputs, get_proxy
from supernet.grouped_edges import GroupedEdgesCell
from supernet.mixed import MixedOp

Batch = tuple[torch.Tensor, torch.Tensor]
Weights = dict[str, torch.Tensor]

VAL_ACC = "val_acc"  # DARTS-PT's own score: validation accuracy (or loss: selection.criterion)


def check_score(name: str) -> str:
    """``name`` if it is ``val_acc`` or a registered proxy; else the registry's error, naming
    ``selection.score`` and every valid choice."""
    Registry("score", "selection.score", {VAL_ACC: None, **PROXIES}).lookup(name)
    return name


def is_proxy(score: str) -> bool:
    return score != VAL_ACC


def per_edge_copy(supernet: nn.Module) -> nn.Module:
    """A deep copy of ``supernet`` that computes the same function per edge and eagerly, every
    candidate through its own modules (see the module docstring)."""
    net = copy.deepcopy(supernet)
    for m in net.modules():
        if isinstance(m, GroupedEdgesCell):
            m.group_edges = False
        if isinstance(m, MixedOp):
            m.relu_first = (False,) * len(m.relu_first)
            m._compiled_all = None
        if getattr(m, "_compiled_call_impl", None) is not None:  # nn.Module.compile
            m._compiled_call_impl = None
    return net


class FixedMixing(nn.Module):
    """The supernet as a plain network: ``forward(x) = supernet(x, weights)``, the mixing
    weights (per cell type, ``[edges, ops]``) fixed, cast to the input's device and dtype (a
    proxy may run the network in double precision)."""

    def __init__(self, supernet: nn.Module, weights: Weights):
        super().__init__()
        self.supernet = supernet
        self.weights = {c: w.detach().clone() for c, w in weights.items()}

    def forward(self, x: torch.Tensor):
        w = {c: v.to(device=x.device, dtype=x.dtype) for c, v in self.weights.items()}
        return self.supernet(x, w)


class ZeroCostScore:
    """The zero-cost proxy ``name`` of the supernet under a mixing (``__call__(weights)``);
    the same value on every rank (module docstring).

    Args:
        name: a registered proxy (``nas.estimate.proxies``).
        supernet: the supernet (never changed: the proxy runs on a copy).
        batches: normalised ``(images, labels)`` batches on the supernet's device, the same
            on every rank; a data-based proxy reads them all (concatenated), a data-free one
            none.
        input_shape, num_classes: of the data (data-free proxies make their inputs).
        seed: torch's generators are seeded with it for each evaluation.
        device: the supernet's device.
    """

    def __init__(self, name: str, supernet: nn.Module, batches: Sequence[Batch],
                 input_shape: Sequence[int], num_classes: int, seed: int,
                 device: torch.device):  # fmt: skip
        self.name = name
        self.proxy = get_proxy(name)
        self.supernet = supernet
        self.batches = [] if self.proxy.data_free else list(batches)
        if not self.proxy.data_free and not self.batches:
            raise ValueError(
                f"selection.score={name!r} reads data, but no validation batches were given: "
                "set selection.score_batches >= 1 (or use a data-free proxy: "
                f"{', '.join(sorted(n for n, p in PROXIES.items() if p.data_free))})."
            )
        self.input_shape, self.num_classes = list(input_shape), num_classes
        self.seed, self.device = seed, device
        self._copy: nn.Module | None = None

    def network(self, weights: Weights) -> FixedMixing:
        """The supernet's copy, its state set to the supernet's, under ``weights``, in train
        mode."""
        if self._copy is None:
            self._copy = per_edge_copy(self.supernet)
        current = self.supernet.state_dict(keep_vars=True)
        with torch.no_grad():  # in place: the copy's tensors take the supernet's values
            for key, tensor in self._copy.state_dict(keep_vars=True).items():
                tensor.copy_(current[key])
        return FixedMixing(self._copy, weights).train()

    def local(self, weights: Weights) -> float:
        """This process' score of the mixing ``weights``."""
        model = self.network(weights)
        inputs = ProxyInputs(
            model=model,
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            batches=self.batches,
            seed=self.seed,
            device=self.device,
        )
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            return float(self.proxy.score(inputs))

    def __call__(self, weights: Weights) -> float:
        """Rank 0's score, on every rank; a failure on rank 0 fails every rank."""
        if not distributed.is_distributed():
            return self.local(weights)
        value, error = math.nan, None
        if distributed.rank() == 0:
            try:
                value = self.local(weights)
            except Exception as err:  # every rank must leave the broadcast
                error = err
        buf = torch.tensor([value, float(error is not None)], dtype=torch.float64)
        distributed.broadcast_([buf])
        if error is not None:
            raise error
        if buf[1].item():
            raise RuntimeError(
                f"selection.score={self.name!r}: the proxy failed on rank 0 (see its log)."
            )
        return float(buf[0].item())
