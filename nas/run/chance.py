"""Did the search beat chance? The found cell against random cells of the same size.

At a small scale (the default job: 8x8 digits, a few search epochs) a searched cell can be no
better than any cell of its size: the data may be too easy to tell cells apart, or the
search too short to learn. ``chance.cells`` = N > 0 makes the pipeline (after retraining the
found genotype) train N random genotypes with the same retrain recipe and the same seed
scheme (the run's seed reset before each, as before the found cell's retrain: same
initialisation stream, batch order and augmentation), and compare test accuracies:
``summary.json`` gets ``chance`` (the random genotypes, their params and test accuracies, the
found cell's, and a one-line verdict), which is also printed.

The random cells are of the found cell's size in the sense that matters for DARTS' collapse:
the wiring (two distinct inputs per node) is drawn by the DARTS space's own uniform sampler
(``nas.strategies.samplers.uniform.sample_arch``, random search with weight sharing's), then
the ops are redrawn so that each cell type has exactly as many parameter-free ops (skips,
pools: ``nas.core.genotype.PARAM_FREE_OPS``) as the found genotype's, at uniformly drawn kept
edges, each op uniform within its kind. Draws come from a generator seeded by the run's seed
only, so the same seed gives the same random cells; duplicates and the found cell itself are
redrawn.

The verdict is the plain reading of N+1 numbers on one test set, not a significance test:
above every random cell, within their range (the data cannot tell them apart), or below
every one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from nas.core.genotype import PARAM_FREE_OPS, Genotype, kept_edges
from nas.core.log import get_logger
from nas.run import builders
from nas.strategies.samplers.uniform import arch_alphas, sample_arch
from nas.strategies.selection import select
from supernet.spaces.base import SearchSpace

log = get_logger(__name__)

# Offset of the random cells' generator from the run's seed (other seeded streams use theirs).
SEED_OFFSET = 104729
# Draws before giving up on a genotype distinct from the found one and the earlier ones.
MAX_DRAWS = 1000


def free_counts(genotype: Genotype) -> dict[str, int]:
    """Parameter-free ops per searched cell type."""
    return {
        cell: sum(op in PARAM_FREE_OPS for op, _, _ in edges)
        for cell, edges in kept_edges(genotype).items()
    }


def random_genotypes(space: SearchSpace, found: Genotype, n: int, seed: int) -> list[Genotype]:
    """``n`` distinct random genotypes of ``space`` with ``found``'s parameter-free op count per
    cell type (module docstring); the same ``seed`` gives the same list."""
    if not issubclass(space.genotype_type, Genotype):
        raise ValueError(
            f"chance.cells > 0 compares DARTS-style cells; search_space={space.name!r} is not "
            "one. Set chance.cells=0."
        )
    free = [i for i, op in enumerate(space.ops) if op in PARAM_FREE_OPS]
    weighted = [i for i, op in enumerate(space.ops) if op not in PARAM_FREE_OPS and op != "none"]
    targets = free_counts(found)
    if (not free and any(targets.values())) or not weighted:
        raise ValueError(f"chance: the space's ops {list(space.ops)} cannot match {targets}.")
    g = torch.Generator().manual_seed(seed + SEED_OFFSET)
    seen = {str(found)}
    out: list[Genotype] = []
    for _ in range(MAX_DRAWS):
        if len(out) == n:
            break
        arch = sample_arch(space, g)  # the wiring (and ops we redraw)
        for cell in targets:
            choice = list(arch[cell])
            kept = [e for e, k in enumerate(choice) if k >= 0]
            order = torch.randperm(len(kept), generator=g).tolist()
            chosen_free = {kept[i] for i in order[: targets[cell]]}
            for e in kept:
                pool = free if e in chosen_free else weighted
                choice[e] = pool[int(torch.randint(len(pool), (1,), generator=g))]
            arch[cell] = tuple(choice)
        genotype = select(space.default_selection, arch_alphas(arch, len(space.ops)), space)
        if str(genotype) not in seen:
            seen.add(str(genotype))
            out.append(genotype)
    if len(out) < n:
        raise ValueError(f"chance: only {len(out)} distinct random cells in {MAX_DRAWS} draws.")
    return out


def verdict(found: float, random: list[float]) -> str:
    """One line: the found cell's test accuracy against the random cells' range."""
    lo, hi = min(random), max(random)
    mean = sum(random) / len(random)
    n = len(random)
    stats = (
        f"found {100 * found:.2f}% vs {n} random cells of the same size "
        f"{100 * lo:.2f}-{100 * hi:.2f}% (mean {100 * mean:.2f}%)"
    )
    if found > hi:
        return f"search beat chance: {stats}; better than every random cell"
    if found < lo:
        return f"search did worse than chance: {stats}; below every random cell"
    return (
        f"no evidence the search beat chance: {stats}; the found cell is within the random "
        "cells' spread, the data cannot tell them apart"
    )


def train_random_cell(cfg: DictConfig, run_dir: Path, space: SearchSpace, genotype, index: int):
    """One random genotype trained and tested as ``nas.run.stages.retrain`` trains the found one
    (same builders, same recipe, the run's seed reset first), without a logger or export;
    its checkpoints go to ``checkpoints/chance<index>/``. Returns (params, test accuracy)."""
    from nas.run.stages import profile_fields

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = builders.child_network(cfg, space, genotype)
    # As nas.run.stages.retrain does, in its order (the count builds a second network: the same
    # random draws before training).
    params = profile_fields(cfg, space, genotype)["params"]
    module = builders.retrain_module(cfg, model)
    data = builders.retrain_data(cfg)
    stage = f"chance{index}"
    trainer = builders.trainer(cfg, run_dir, stage, False, max_epochs=cfg.retrain.epochs)
    trainer.fit(module, datamodule=data)
    if trainer.interrupted:
        raise KeyboardInterrupt("chance comparison interrupted")
    results = trainer.test(module, datamodule=data, verbose=False)
    return params, (results[0]["retrain/test_acc"] if results else None)


def compare(
    cfg: DictConfig, run_dir: Path, space: SearchSpace, found: Genotype, found_acc: float | None
) -> dict[str, Any]:
    """``chance.cells`` random cells of the run's ``space`` trained like the found one: the
    ``chance`` summary field (empty when ``chance.cells`` is 0)."""
    n = cfg.get("chance", {}).get("cells", 0)
    if not n:
        return {}
    start = time.perf_counter()
    genotypes = random_genotypes(space, found, n, cfg.seed)
    log.info(f"chance: training {n} random cells with {free_counts(found)} parameter-free ops, "
             f"{cfg.retrain.epochs} epochs each")  # fmt: skip
    params, accs = [], []
    for i, genotype in enumerate(genotypes, start=1):
        p, acc = train_random_cell(cfg, run_dir, space, genotype, i)
        params.append(p)
        accs.append(acc)
        shown = "none (no test run)" if acc is None else f"{100 * acc:.2f}%"
        log.info(f"chance: random cell {i}/{n}: {p:,} params, test accuracy {shown}")
    fields = {
        "cells": n,
        "param_free_ops": free_counts(found),
        "random_genotypes": [str(g) for g in genotypes],
        "random_params": params,
        "random_test_acc": accs,
        "found_test_acc": found_acc,
        "wall_time_s": time.perf_counter() - start,
    }
    if found_acc is not None and all(a is not None for a in accs):
        fields["verdict"] = verdict(found_acc, accs)
    else:
        fields["verdict"] = "no test accuracy to compare (no test run)"
    log.info(f"chance: {fields['verdict']}")
    return {"chance": fields}
