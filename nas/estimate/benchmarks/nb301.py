"""The ``nb301`` estimator: NAS-Bench-301's surrogate prediction for a found DARTS cell (Siems,
Zimmer, Zela, Lukasik, Keuper, Hutter, "NAS-Bench-301 and the Case for Surrogate Benchmarks for
Neural Architecture Search", 2020).

The DARTS space (~10^18 cells) cannot be tabulated; NAS-Bench-301 trained ~60k of its cells
on CIFAR-10 and fit surrogate models (an ensemble: XGBoost by default, or a GIN) to their
final validation accuracy, and an LGBoost model to their training time. Its prediction is the
standard stand-in for "how good is this DARTS cell" without a 100-epoch retrain.

Needs the ``nasbench301`` package and its downloaded model directories (path from the
estimator's ``models_dir`` option or ``NB301_MODELS_DIR``: the directory holding
``xgb_v1.0`` / ``xgb_v0.9`` (or ``nb_models_1.0/`` / ``nb_models_0.9/`` holding them), or one
ensemble directory itself). The API (``nasbench301/api.py``): ``load_ensemble(dir)`` returns a
``SurrogateAPI`` whose ``predict(config, representation="genotype", with_noise)`` takes a
DARTS ``Genotype(normal, normal_concat, reduce, reduce_concat)`` namedtuple, reads
``.normal``/``.reduce`` as 8 (op, input) pairs, two per node, and returns the mean of the
ensemble (``with_noise=False``). Its op names are DARTS' without ``none`` (``NB301_OPS``);
its config space needs two distinct inputs per node and the 4 intermediate nodes concatenated
(``to_nb301_genotype`` checks both). A missing package, model directory or a cell outside its
space gives a one-line reason.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections import namedtuple
from pathlib import Path
from typing import Any

from nas.estimate.base import Estimator, register_estimator
from nas.estimate.benchmarks.files import env_path, one_line
from supernet.genotypes import Genotype, GenotypeBase
from supernet.spaces.base import SearchSpace
from supernet.spaces.darts import DARTS_OPS, DartsSpace

ENV_DIR = "NB301_MODELS_DIR"
# NAS-Bench-301's op names (``nasbench301/representations.py``), DARTS' PRIMITIVES but ``none``.
NB301_OPS = tuple(op for op in DARTS_OPS if op != "none")
NB301_STEPS = 4
NB301Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
MODEL_FILE = "surrogate_model.model"  # what load_ensemble looks for in each member directory

_ENSEMBLES: dict[str, Any] = {}


def to_nb301_genotype(genotype: GenotypeBase) -> NB301Genotype:
    """Our DARTS ``Genotype`` as NAS-Bench-301's namedtuple (lists of (op, input) tuples, same
    order: pair k feeds node 2 + k // 2); ``ValueError`` (one line) for a cell outside
    NAS-Bench-301's space."""
    if not isinstance(genotype, Genotype) or genotype.space != "darts":
        raise ValueError(f"NAS-Bench-301 scores DARTS cells, not a {genotype.space} genotype")
    if genotype.fixed_reduction:
        raise ValueError(f"reduce_cell={genotype.reduce_cell!r}: NAS-Bench-301 searches both cells")
    cells = {}
    for cell in ("normal", "reduce"):
        pairs, concat = genotype.cell(cell)
        if len(pairs) != 2 * NB301_STEPS or tuple(concat) != tuple(range(2, 2 + NB301_STEPS)):
            raise ValueError(
                f"{cell}: NAS-Bench-301 cells have {NB301_STEPS} nodes, all concatenated "
                f"(got {len(pairs) // 2} nodes, concat {list(concat)})"
            )
        bad = sorted({op for op, _ in pairs if op not in NB301_OPS})
        if bad:
            raise ValueError(f"{cell}: ops {bad} are not in NAS-Bench-301's {list(NB301_OPS)}")
        for k in range(0, len(pairs), 2):
            if pairs[k][1] == pairs[k + 1][1]:
                raise ValueError(
                    f"{cell}: node {2 + k // 2} takes input {pairs[k][1]} twice; NAS-Bench-301 "
                    "needs two distinct inputs"
                )
        cells[cell] = ([(op, int(i)) for op, i in pairs], list(concat))
    return NB301Genotype(
        cells["normal"][0], cells["normal"][1], cells["reduce"][0], cells["reduce"][1]
    )


def ensemble_dir(models_dir: str | Path, model: str) -> Path | None:
    """The ensemble directory of ``model`` (``xgb``, ``gnn_gin``, ``lgb_runtime``) under
    ``models_dir`` (newest version first); ``models_dir`` itself when it is one ensemble
    named after the model; None when absent."""
    root = Path(models_dir)
    for version in ("1.0", "0.9"):
        for parent in (root, root / f"nb_models_{version}"):
            candidate = parent / f"{model}_v{version}"
            if candidate.is_dir() and any(candidate.rglob(MODEL_FILE)):
                return candidate
    if root.is_dir() and root.name.startswith(model) and any(root.rglob(MODEL_FILE)):
        return root
    return None


def load_ensemble(directory: Path) -> Any:
    """``nasbench301.load_ensemble(directory)``, once per directory per process (loading an
    ensemble takes seconds)."""
    key = str(directory.resolve())
    if key not in _ENSEMBLES:
        nb = importlib.import_module("nasbench301")
        _ENSEMBLES[key] = nb.load_ensemble(str(directory))
    return _ENSEMBLES[key]


def clear_cache() -> None:
    _ENSEMBLES.clear()


class NB301Surrogate(Estimator):
    """NAS-Bench-301's predicted CIFAR-10 validation accuracy (``cifar10_valid_acc``, percent)
    of a found DARTS cell, and its predicted training time (``runtime_s``) where the runtime
    model is present.

    Args:
        models_dir: the downloaded models (default: ``NB301_MODELS_DIR``).
        model: the performance surrogate, ``xgb`` (the paper's default) or ``gnn_gin``.
    """

    def __init__(self, models_dir: str | None = None, model: str = "xgb"):
        self.models_dir, self.model = models_dir, model

    def applies_to(self, space: SearchSpace) -> bool:
        return isinstance(space, DartsSpace)

    def estimate(self, space: SearchSpace, genotype: GenotypeBase) -> dict[str, Any]:
        if importlib.util.find_spec("nasbench301") is None:
            return {"available": False, "reason": "nasbench301 not installed"}
        models_dir = self.models_dir or env_path(ENV_DIR)
        if not models_dir:
            return {"available": False, "reason": f"no NAS-Bench-301 models directory ({ENV_DIR})"}
        perf_dir = ensemble_dir(models_dir, self.model)
        if perf_dir is None:
            return {
                "available": False,
                "reason": f"no {self.model} surrogate ensemble under {models_dir}",
            }
        try:
            config = to_nb301_genotype(genotype)
        except ValueError as err:
            return {"available": False, "reason": one_line(err)}
        try:  # third-party code: whatever it raises becomes the reason
            acc = load_ensemble(perf_dir).predict(
                config=config, representation="genotype", with_noise=False
            )
            out: dict[str, Any] = {
                "available": True,
                "cifar10_valid_acc": float(acc),
                "model": self.model,
                "models_dir": str(perf_dir),
            }
            runtime_dir = ensemble_dir(models_dir, "lgb_runtime")
            if runtime_dir is not None:
                runtime = load_ensemble(runtime_dir).predict(
                    config=config, representation="genotype", with_noise=False
                )
                out["runtime_s"] = float(runtime)
        except Exception as err:
            return {"available": False, "reason": f"NAS-Bench-301 failed: {one_line(err)}"}
        return out


register_estimator("nb301", NB301Surrogate)
