"""``stage=estimate estimate.search=<method>``: black-box search over an estimator.

A method of ``nas.estimate.black_box`` (random, evolution, local_search, bananas; its options are the
``estimate.*`` keys named like its arguments) spends ``estimate.budget`` evaluations of
``estimate.objective``:

- a zero-cost proxy's name (the untrained child network's score, ``nas.estimate.proxies``);
- ``benchmark``: the space's tabular benchmark (NAS-Bench-201's validation accuracy on
  ``estimate.dataset``, as the benchmark's search protocol uses; the test accuracy of the
  best is reported beside it);
- ``predictor``: ``estimate.predictor`` trained on ``estimate.truth`` (``estimate_truth``);
- ``supernet``: a trained supernet's accuracy with inherited weights (``estimate.supernet``: a
  search run's directory or its ``last.ckpt``, searched under this config), each candidate on
  the first ``estimate.batches`` validation batches with its own path's batch statistics
  (``nas.strategies.selection.scoring``, as RSWS and SPOS select).

Every evaluation is written to ``black_box_trace.csv`` (arch, score, best so far), the
best-so-far curve to a PNG, and the best architecture to ``genotype.json``, so
``stage=retrain genotype=<run dir>/genotype.json`` trains it.
"""

from __future__ import annotations

import csv
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from nas.core.genotype import save_genotype
from nas.core.io import atomic_file
from nas.core.log import get_logger
from nas.estimate.archs import Arch, parse_arch
from nas.estimate.benchmark import lookup
from nas.estimate.black_box import METHODS, build_method
from nas.estimate.encodings import encode, resolve_encoding
from nas.estimate.proxies import PROXIES
from nas.estimate.scoring import ArchScorer, needs_data
from nas.run import builders
from supernet.genotypes import GenotypeBase
from supernet.spaces.base import SearchSpace

log = get_logger(__name__)

TRACE_FILE = "black_box_trace.csv"
GENOTYPE_FILE = "genotype.json"
OBJECTIVES = ("benchmark", "predictor", "supernet")


def check_settings(cfg: DictConfig, space: SearchSpace) -> None:
    e = cfg.estimate
    METHODS.lookup(e.search)
    build_method(e.search, **options(cfg))  # bad options fail now, naming the key
    if e.budget < 1:
        raise ValueError(f"estimate.budget={e.budget}: give at least 1 evaluation.")
    if e.objective not in PROXIES and e.objective not in OBJECTIVES:
        raise ValueError(
            f"estimate.objective={e.objective!r}: the black-box search maximises a proxy "
            f"({', '.join(sorted(PROXIES))}), benchmark, predictor or supernet."
        )
    if e.objective == "benchmark":
        probe = benchmark_result(space, space.reference_genotype())
        if not probe.get("available", False):
            raise ValueError(
                f"estimate.objective=benchmark: {probe.get('reason')} (search_space={space.name})."
            )
    if e.objective == "supernet":
        supernet_checkpoint(cfg)
    if e.objective == "predictor" and e.predictor is None:
        raise ValueError(
            "estimate.objective=predictor needs estimate.predictor=<rf|gb|gp|mlp> and "
            "estimate.truth=<CSV of evaluated architectures, or a NAS-Bench-201 file>."
        )


def options(cfg: DictConfig) -> dict[str, Any]:
    """The method's own options: the ``estimate.*`` keys named like its constructor's
    arguments (``estimate.population``, ``estimate.sample_size``, ...)."""
    cls = METHODS.lookup(cfg.estimate.search)
    names = [p for p in inspect.signature(cls).parameters if p not in ("self", "options")]
    return {n: cfg.estimate[n] for n in names if n in cfg.estimate}


def benchmark_result(space: SearchSpace, genotype: GenotypeBase) -> dict[str, Any]:
    key = space.benchmark_key(genotype)
    if key is None:
        return {"available": False, "reason": f"search_space={space.name} has no benchmark"}
    return lookup(key, space.benchmark_file)


def objective(
    cfg: DictConfig, space: SearchSpace, device: torch.device, batches: list
) -> Callable[[GenotypeBase], float]:
    e = cfg.estimate
    if e.objective == "benchmark":
        field = f"{e.dataset}_valid_acc"

        def from_benchmark(genotype: GenotypeBase) -> float:
            result = benchmark_result(space, genotype)
            return float(result.get(field, float("nan")))

        return from_benchmark
    if e.objective == "supernet":
        return supernet_objective(cfg, space, device)
    if e.objective == "predictor":
        from nas.run.estimate_truth import fit_predictor

        model, _ = fit_predictor(cfg, space)
        encoding = resolve_encoding(space, e.encoding)
        return lambda g: float(model.predict(encode(space, [g], encoding))[0])
    scorer = ArchScorer(
        lambda g: builders.child_network(cfg, space, g),
        [e.objective], cfg.data.input_shape, cfg.data.num_classes, batches, cfg.seed, device,
    )  # fmt: skip
    return lambda g: scorer.score(Arch(str(g), g)).scores[e.objective]


def supernet_checkpoint(cfg: DictConfig) -> Path:
    """``estimate.supernet``'s checkpoint, written by a search under this run's config."""
    from nas.run.resume import check_checkpoint

    spec = cfg.estimate.supernet
    if spec is None:
        raise ValueError(
            "estimate.objective=supernet needs estimate.supernet=<a search run's directory or "
            "its checkpoints/search/last.ckpt>."
        )
    path = Path(spec)
    if path.is_dir():
        path = path / "checkpoints" / "search" / "last.ckpt"
    if not path.is_file():
        raise FileNotFoundError(
            f"estimate.supernet={spec!r}: no checkpoint there (a search run's directory holds "
            "checkpoints/search/last.ckpt)."
        )
    check_checkpoint(path, cfg, "search")  # the same space, strategy, data and seed
    return path


def supernet_objective(cfg: DictConfig, space: SearchSpace, device: torch.device):
    """Accuracy of a candidate with the trained supernet's shared weights."""
    from nas.estimate.black_box import Moves
    from nas.strategies.selection.scoring import score_arch

    path = supernet_checkpoint(cfg)
    module = builders.search_module(cfg, space)
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])
    supernet = module.supernet.to(device)
    data = builders.search_data(cfg)
    data.prepare_data()
    data.setup("fit")
    batches = data.first_batches(data.val_dataloader(), max(cfg.estimate.batches, 1), device)
    moves = Moves(space, torch.Generator())
    log.info(f"supernet of {path}: candidates scored on {len(batches)} validation batch(es)")

    def accuracy(genotype: GenotypeBase) -> float:
        arch = dict(zip(space.cell_types, moves.choice(genotype), strict=True))
        return score_arch(supernet, arch, batches, len(space.ops))

    return accuracy


def search(
    cfg: DictConfig, run_dir: Path, space: SearchSpace, device: torch.device, batches: list
) -> dict[str, Any]:
    e = cfg.estimate
    evaluate = objective(cfg, space, device, batches)
    method = build_method(e.search, **options(cfg))
    log.info(f"black-box search: {e.search} over {e.objective}, budget {e.budget} evaluations")
    trace = method.run(space, evaluate, e.budget, cfg.seed)
    path = run_dir / TRACE_FILE
    with atomic_file(path) as f:
        w = csv.writer(f)
        w.writerow(["evaluation", "arch", e.objective, "best_so_far"])
        for i, (arch, score, best) in enumerate(
            zip(trace.archs, trace.scores, trace.best_so_far, strict=True), start=1
        ):
            w.writerow([i, arch, repr(score), repr(best)])
    fields: dict[str, Any] = {
        "black_box": {
            "method": e.search,
            "options": options(cfg),
            "objective": e.objective,
            "budget": e.budget,
            **trace.to_dict(),
            "trace_file": str(path),
        }
    }
    if trace.best_arch is None:
        log.info("black-box search: no evaluation gave a finite score")
        return fields
    genotype = parse_arch(trace.best_arch, space)
    save_genotype(genotype, run_dir / GENOTYPE_FILE)
    bench = benchmark_result(space, genotype)
    if bench.get("available"):
        fields["black_box"]["best_benchmark"] = {
            k: v for k, v in bench.items() if k.endswith(("_valid_acc", "_test_acc"))
        }
    fields["black_box"]["figure"] = str(curve_png(trace, e, run_dir / "figures" / "black_box.png"))
    fields["genotype"] = str(genotype)
    fields["genotype_file"] = str(run_dir / GENOTYPE_FILE)
    log.info(f"black-box search: best {e.objective}={trace.best_score:.4g}: {genotype}")
    return fields


def curve_png(trace, e: DictConfig, path: Path) -> Path:
    from nas.core.plots import new_figure, save_png, spans_decades

    fig, ax = new_figure(6.0, 3.6)
    n = range(1, len(trace.scores) + 1)
    ax.scatter(n, trace.scores, s=6, alpha=0.4, color="#999999", label="evaluated")
    ax.plot(n, trace.best_so_far, color="#c44e52", label="best so far")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(e.objective)
    if spans_decades([v for v in trace.scores if math.isfinite(v)]):  # synflow: 10^20 and up
        ax.set_yscale("log")
    ax.set_title(f"{e.search} over {e.objective}: best {trace.best_score:.4g}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def uses_data(cfg: DictConfig) -> bool:
    e = cfg.estimate
    return e.objective in PROXIES and needs_data([e.objective])
