"""Scoring architectures with zero-cost proxies: one row per architecture.

Each architecture's child network is built after seeding torch with the run seed, so its
initial weights (and so its scores) depend on the architecture and the seed only, never on
its position in the list: a resumed job and a job over a subset give the same rows. Each proxy
gets its own copy of the network (synflow changes the weights it is given) and the same
batches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from nas.estimate.archs import Arch
from nas.estimate.proxies import PROXIES, ProxyInputs, get_proxy
from nas.estimate.proxies.macs import conv_linear_macs
from nas.estimate.proxies.params import AUXILIARY_PREFIX
from supernet.genotypes import GenotypeBase

# Columns every row has besides the architecture and the proxies.
COST_COLUMNS = ("params", "macs")


@dataclass
class ScoreRow:
    """One architecture's scores (proxy name -> score; non-finite kept as is)."""

    arch: str
    scores: dict[str, float]
    costs: dict[str, int] = field(default_factory=dict)


def check_proxies(names: Sequence[str]) -> list[str]:
    """The proxy names, each registered (an unknown one: the registry's error listing the
    valid names), without repeats; ``params``/``flops`` are already columns of every row."""
    if not names:
        raise ValueError(
            "estimate.proxies is empty: name at least one proxy. Valid choices are: "
            f"{', '.join(sorted(PROXIES))}."
        )
    out: list[str] = []
    for name in names:
        get_proxy(name)
        if name not in out:
            out.append(name)
    return out


def needs_data(names: Sequence[str]) -> bool:
    return any(not get_proxy(n).data_free for n in names)


class ArchScorer:
    """Builds each architecture's child (``build``) and scores it with ``proxies``; its
    ``params`` and ``macs`` come from ``costs`` (the space's cost tables, which equal the
    counts on the network: ``nas.hardware.costs``) or are counted on the network."""

    def __init__(
        self,
        build: Callable[[GenotypeBase], nn.Module],
        proxies: Sequence[str],
        input_shape: Sequence[int],
        num_classes: int,
        batches: list[tuple[torch.Tensor, torch.Tensor]],
        seed: int,
        device: torch.device,
        costs: Callable[[GenotypeBase], dict[str, int]] | None = None,
    ):
        self.build = build
        self.costs = costs
        self.proxies = check_proxies(proxies)
        self.input_shape = list(input_shape)
        self.num_classes = num_classes
        self.batches = batches
        self.seed = seed
        self.device = device
        if needs_data(self.proxies) and not batches:
            raise ValueError(
                "estimate.batches=0, but the proxies "
                f"{[n for n in self.proxies if not get_proxy(n).data_free]} read data: give "
                "estimate.batches >= 1, or use only data-free proxies (params, flops, synflow, "
                "zen)."
            )

    def network(self, genotype: GenotypeBase) -> nn.Module:
        torch.manual_seed(self.seed)
        model = self.build(genotype)
        if self.device.type != "cpu":  # built on the CPU: moving there walks every module
            model = model.to(self.device)
        return model.train()

    def score(self, arch: Arch) -> ScoreRow:
        model = self.network(arch.genotype)
        if self.costs is not None:  # the space's cost tables: a lookup, no forward pass
            costs = self.costs(arch.genotype)
        else:  # as stage=profile counts them: no auxiliary head, conv and linear MACs
            costs = {
                "params": sum(
                    p.numel()
                    for name, p in model.named_parameters()
                    if p.requires_grad and not name.startswith(AUXILIARY_PREFIX)
                ),
                "macs": conv_linear_macs(model, self.input_shape),
            }
        scores: dict[str, float] = {}
        for k, name in enumerate(self.proxies):
            last = k == len(self.proxies) - 1
            net = model if last else copy.deepcopy(model)
            torch.manual_seed(self.seed)
            inputs = ProxyInputs(
                model=net,
                input_shape=self.input_shape,
                num_classes=self.num_classes,
                batches=[] if get_proxy(name).data_free else self.batches,
                seed=self.seed,
                device=self.device,
            )
            scores[name] = float(get_proxy(name).score(inputs))
        return ScoreRow(arch.text, scores, costs)


# ---- several processes -----------------------------------------------------------------
# Scoring an architecture is mostly Python (building ~300 modules, hooks, small ops): two
# processes of one thread each score nearly twice as many per second as one of two threads.
_worker: ArchScorer | None = None


def _init_worker(make_scorer: Callable[..., ArchScorer], args: tuple) -> None:
    global _worker
    torch.set_num_threads(1)
    _worker = make_scorer(*args)


def _score_in_worker(arch: Arch) -> ScoreRow:
    assert _worker is not None
    return _worker.score(arch)


def score_all(
    archs: Sequence[Arch],
    make_scorer: Callable[..., ArchScorer],
    args: tuple,
    workers: int = 1,
) -> Iterator[ScoreRow]:
    """Every architecture's row, in order. ``workers`` > 1: that many processes (spawned, one
    torch thread each), each with its own ``make_scorer(*args)`` (a picklable module-level
    function and arguments); rows come back in the order of ``archs``."""
    if workers <= 1 or len(archs) < 2 * workers:
        scorer = make_scorer(*args)
        for arch in archs:
            yield scorer.score(arch)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(make_scorer, args)
    ) as pool:
        yield from pool.map(_score_in_worker, archs, chunksize=8)
