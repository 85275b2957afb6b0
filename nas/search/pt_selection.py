"""Perturbation-based architecture selection (DARTS-PT) after any strategy's search.

Wang, Cheng, Chen, Tang, Hsieh, "Rethinking Architecture Selection in Differentiable NAS",
ICLR 2021 (ruocwang/darts-pt, ``sota/cnn/projection.py``, ``nasbench201/projection.py``):
α's magnitude does not say how much an op contributes to the supernet, so the op of an edge is
chosen by how much the supernet's validation accuracy drops when that op is taken out of the
edge's mixing.

What this module implements (``selection=pt``), as the official code does it:

1. Op decisions: one edge per cell type at a time (a random undecided edge,
   ``--edge_decision random``): each candidate op in turn is masked out of the edge's weights
   (its weight set to 0, the others unchanged) and the supernet's accuracy is measured on the
   validation half; the op whose removal leaves the lowest accuracy is kept (the first on
   ties), and the edge is fixed to it (a one-hot row from then on).
2. Topology (DARTS-style spaces only; NAS-Bench-201 keeps every edge): per node with more than
   2 inputs (random order), edges are removed one at a time: each remaining edge's row is zeroed
   in turn and the edge whose removal leaves the highest accuracy is dropped (the later one on
   ties) until 2 remain.
3. Between decisions the supernet is fine-tuned for ``tune_epochs`` epochs (``--proj_intv 5``)
   with the weights' optimizer restarted at lr / 10 and annealed (cosine, over all tuning
   epochs) to the search's final lr; α keeps its steps on undecided edges (``tune_arch``). The
   official loop also tunes one epoch after the last decision; that cannot change the
   architecture and is skipped.

Zero-Cost-PT (``selection.score=<a zero-cost proxy>``, e.g. ``nwot``, ``synflow``, ``meco``):
Xiang, Dudziak, Abdelfattah, Chau, Lane, Wen, "Zero-Cost Operation Scoring in Differentiable
Architecture Search", AAAI 2023 (zerocostptnas/zerocost_operation_score: ``nasbench201/
init_projection.py`` and ``sota/cnn/init_projection.py``, ``pt_project``), and MeCo-PT (Jiang et
al., NeurIPS 2023, HamsterMimi/MeCo, the same code with ``--proj_crit meco``): the same steps,
but every removal is scored by a zero-cost proxy of the supernet under that mixing
(``nas.search.zero_cost_scoring``: a copy of the supernet wrapped as ``x -> supernet(x,
weights)``, the same ``selection.score_batches`` validation batches and the same random draws
for every candidate) instead of its validation accuracy. Higher proxy = better, so the op
whose removal leaves the lowest proxy is kept (their ``np.nanargmin`` over the removals; the
first on ties; a removal whose proxy is nan is never kept), and in the topology step the edge
whose removal leaves the highest proxy is dropped (the later one on ties, as their ``not x < y``
comparison), until 2 remain. The official pipeline trains nothing: the supernet is freshly
initialised and no tuning runs between decisions (the preset comment in
``conf/selection/pt.yaml``); here the selection runs after the search and ``tune_epochs`` still
applies. The report records, per decision, the proxy of the unperturbed mixing (``score``), each
removal's proxy (``scores``) and how much it lowered the proxy (``drop``). Not implemented: the
official pipeline repeats the whole discretisation N times (``--pool_size 10``, α reset between,
a fresh training batch per decision) and keeps the pool's architecture whose child network has
the highest proxy summed over V batches (``zerocostnas/post_validate.py``,
``--validate_rounds 100``); here one pass decides, on the same batches throughout.

Candidates: the DARTS-PT DARTS space has no ``none`` (its ``s5`` op list), so in spaces with a
topology step ``none`` is not a candidate op (the topology step removes edges); in NAS-Bench-201
every op is, ``none`` included (``range(num_op)`` in the official code). Ops pruned by a
progressive strategy (DrNAS' op masks) are not candidates.

The evaluation mixes with the strategy's ``probabilities(α)`` (softmax(α) for DARTS; PC-DARTS'
β already folded in), decided rows one-hot and dropped edges zero; BN uses batch statistics
(``infer(..., eval=False)`` in the official code) and its running statistics are restored.
The chosen architecture is written into α (one-hot rows, zero rows for dropped edges, β reset
to uniform), so ``alphas.json``, ``genotype.json`` and ``stage=discretize`` agree.

Under DDP (``trainer=ddp``: every rank runs the selection after the fit, the process group
still up; ``nas.core.distributed``) every rank makes the same decisions: each evaluates its shard
of every validation batch (every world_size-th sample) and the correct predictions, summed
losses and sample counts are summed over ranks before any comparison, so the accuracy (loss)
is that of all the ranks' images together (a zero-cost proxy is computed by rank 0 on the
full validation batches and broadcast: ``nas.search.zero_cost_scoring``); the edge and node
order comes from a generator seeded with rank 0's seed; the tuning steps, which call the
supernet outside Lightning's DDP wrapper, average the weights' and α's gradients over ranks
before clipping and stepping (as DDP's reducer and ``SearchModule._average_arch_grads`` do in
the search), and BN running statistics are broadcast from rank 0 after each tuning (DDP's
``broadcast_buffers``), so the supernet stays the same on every rank. In one process no distributed call is made.

Checkpoint and resume (``PTCheckpoint``): the selection runs outside Lightning, so it writes
its own ``<run dir>/checkpoints/pt/last.ckpt`` (atomically: ``AtomicCheckpointIO``) after
every decision and after every tuning epoch: the decisions so far (projection, undecided edges
and nodes, the edge-order generator, the report's entries), the supernet and α
(``module.state_dict()``), the strategy's random streams, the tuner's optimizers and lr
schedule, the global RNG states (``RNGState``), the data position (sampler and augmentation
generators) and the config stamp (the search's identity plus ``selection``, made by
``nas.run.pt_stage``, which also turns ``resume=<that file>`` into the search's own
``resume=auto``). With ``resume=auto`` (or ``resume=<that file>``) the search resumes from its
finished checkpoint (its fit ends at once), then ``pt_select`` restores the file and continues exactly where it
stopped: decisions made are not redone, a tuning continues with its next epoch. The file also
records a fingerprint of the search's final state (every tensor of ``module.state_dict()``):
a checkpoint taken after a different search (e.g. one continued with more epochs since) or
under a different config is refused, with the reason.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Optional  # noqa: UP035 - OmegaConf needs typing.Optional

import torch
from lightning.pytorch.utilities import move_data_to_device

from nas.core import distributed
from nas.core.arch import BETA_PREFIX
from nas.core.checkpoints import LAST, STAMP_KEY, AtomicCheckpointIO, differences
from nas.core.log import get_logger
from nas.core.rng import RNGState
from nas.search.hessian import frozen_batch_norm_buffers
from nas.search.zero_cost_scoring import VAL_ACC, ZeroCostScore, check_score, is_proxy
from nas.strategies.protocols import Modifier
from nas.strategies.samplers import Mixing
from nas.strategies.selection import select

log = get_logger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
Weights = dict[str, torch.Tensor]
# A removal's score: higher = it hurts more (-accuracy, or the loss); with a proxy, the proxy's
# value (``PerturbationSelection.proxy_hurt``: how much it hurts).
Evaluate = Callable[[Weights], float]


@dataclass
class SelectionConfig:
    """The ``selection`` settings: how the searched supernet becomes an architecture
    (``conf/selection/``; ``nas.run.schema`` registers this dataclass).

    ``default``: the strategy's own rule (or model-based selector). ``pt``: DARTS-PT's
    perturbation-based selection (this module); the other fields are its settings.
    """

    name: str = "default"
    # val_acc (DARTS-PT: the removal's validation accuracy, or loss: ``criterion``) or a
    # registered zero-cost proxy (Zero-Cost-PT: nwot, synflow, meco, ...; nas/estimate/proxies)
    score: str = VAL_ACC
    criterion: str = "acc"  # acc | loss (score=val_acc: what a removal is judged by)
    edge_order: str = "random"  # random (darts-pt's --edge_decision random) | fixed
    tune_epochs: int = 5  # fine-tuning epochs between decisions (darts-pt --proj_intv 5)
    tune_lr_factor: float = 0.1  # tuning lr = the weights' lr x this (darts-pt: lr / 10)
    tune_lr_schedule: str = "constant"  # constant (darts-pt) | cosine over the tuning epochs
    tune_arch: bool = True  # keep taking α steps on undecided edges while tuning
    tune_batches: Optional[int] = None  # noqa: UP045 - steps per tuning epoch; None = all
    eval_batches: Optional[int] = None  # noqa: UP045 - val batches per evaluation; None = all
    score_batches: int = 1  # score=<proxy>: val batches a data-based proxy reads (concatenated)

    def __post_init__(self) -> None:
        check_score(self.score)  # an unknown score fails when the settings are read
        if self.score_batches < 1:
            raise ValueError(f"selection.score_batches={self.score_batches} must be >= 1.")


@dataclass
class Projection(Modifier):
    """Decisions so far, per cell type: the op of each decided edge, the dropped edges. While
    tuning, a strategy modifier (``mixing``; its other hooks the base's no-ops)."""

    ops: dict[str, dict[int, int]] = field(default_factory=dict)
    dropped: dict[str, set[int]] = field(default_factory=dict)

    def apply(self, weights: Weights) -> Weights:
        """``weights`` with decided rows one-hot and dropped edges zero (new tensors; gradients
        still flow into the undecided rows)."""
        out = {}
        for cell, w in weights.items():
            ops, dropped = self.ops.get(cell, {}), self.dropped.get(cell, set())
            if not ops and not dropped:
                out[cell] = w
                continue
            fixed = torch.zeros_like(w)
            keep = torch.ones(w.shape[0], 1, dtype=torch.bool, device=w.device)
            for e, o in ops.items():
                fixed[e, o] = 1.0
                keep[e] = False
            for e in dropped:
                fixed[e].zero_()
                keep[e] = False
            out[cell] = torch.where(keep, w, fixed)
        return out

    def mixing(self, mix: Mixing, arch: dict[str, torch.Tensor]) -> Mixing:
        """As a strategy modifier while tuning: the decided edges run their op only."""
        weights = self.apply(mix.weights)
        active = mix.active
        if active is not None:
            active = dict(active)
            for cell, rows in list(active.items()):
                if rows is None or cell not in weights:
                    continue
                rows = list(rows)
                for e, o in self.ops.get(cell, {}).items():
                    rows[e] = [o]
                for e in self.dropped.get(cell, set()):
                    rows[e] = []
                active[cell] = rows
        return Mixing(weights, active, mix.edge_weights)


def _same(value: float) -> float:
    return value


def choose_op(
    evaluate: Evaluate, weights: Weights, cell: str, edge: int, candidates: Sequence[int],
    hurt: Callable[[float], float] = _same,
) -> tuple[int, dict[int, float]]:  # fmt: skip
    """The candidate op whose removal from ``edge`` hurts most (the first on ties), and the
    score of each removal (``evaluate``'s value; ``hurt(value)``: how much it hurts)."""
    scores: dict[int, float] = {}
    best = None
    for o in candidates:
        w = {c: v.clone() for c, v in weights.items()}
        w[cell][edge, o] = 0.0
        scores[o] = evaluate(w)
        if best is None or hurt(scores[o]) > hurt(scores[best]):
            best = o
    return best, scores


def choose_edges(
    evaluate: Evaluate, weights: Weights, cell: str, incoming: Sequence[int], k: int = 2,
    hurt: Callable[[float], float] = _same,
) -> tuple[list[int], list[dict[str, Any]]]:  # fmt: skip
    """Drops, one at a time, the edge whose removal hurts least (the later one on ties) until
    ``k`` remain; returns the kept edges and each round's scores (as ``choose_op``)."""
    eids = list(incoming)
    rounds = []
    while len(eids) > k:
        scores: dict[int, float] = {}
        worst = None
        for e in eids:
            w = {c: v.clone() for c, v in weights.items()}
            w[cell][e].zero_()
            scores[e] = evaluate(w)
            if worst is None or hurt(scores[e]) <= hurt(scores[worst]):
                worst = e
        eids.remove(worst)
        weights = {c: v.clone() for c, v in weights.items()}
        weights[cell][worst].zero_()
        rounds.append({"removed": worst, "scores": scores})
    return eids, rounds


def has_topology(space) -> bool:
    """DARTS-style spaces keep 2 inputs per node; NAS-Bench-201 keeps every edge."""
    return space.default_selection != "argmax_per_edge"


class PerturbationSelection:
    """Runs DARTS-PT on a trained ``SearchModule`` (see the module docstring).

    Args:
        criterion: ``acc`` (keep what lowers accuracy most when removed) or ``loss``.
        score: ``val_acc`` (DARTS-PT: ``criterion`` on the validation batches) or a registered
            zero-cost proxy (Zero-Cost-PT: keep what lowers the proxy most when removed).
        edge_order: ``random`` (the official default) or ``fixed`` (edge index order).
        tune_epochs: fine-tuning epochs between decisions (0: none).
        tune_lr_factor: the tuning lr as a fraction of the weights' initial lr.
        tune_arch: take α steps (the strategy's arch-gradient mode) while tuning.
        tune_batches: steps per tuning epoch (None: a full pass).
        eval_batches: validation batches per evaluation (None: all).
        seed: seeds the edge and node order (under DDP, rank 0's seed on every rank) and the
            proxy's random draws.
        score_batches: the validation batches a data-based proxy reads.
    """

    def __init__(
        self,
        criterion: str = "acc",
        edge_order: str = "random",
        tune_epochs: int = 5,
        tune_lr_factor: float = 0.1,
        tune_arch: bool = True,
        tune_batches: int | None = None,
        eval_batches: int | None = None,
        seed: int = 0,
        score: str = VAL_ACC,
        score_batches: int = 1,
    ):
        self.score = check_score(score)
        if score_batches < 1:
            raise ValueError(f"selection.score_batches={score_batches} must be >= 1.")
        self.score_batches = score_batches
        if criterion not in ("acc", "loss"):
            raise ValueError(f"selection.criterion={criterion!r}; valid: acc, loss.")
        if edge_order not in ("random", "fixed"):
            raise ValueError(f"selection.edge_order={edge_order!r}; valid: random, fixed.")
        if tune_epochs < 0 or (eval_batches is not None and eval_batches < 1):
            raise ValueError("selection.tune_epochs must be >= 0 and eval_batches >= 1 or null.")
        self.criterion, self.edge_order = criterion, edge_order
        self.tune_epochs, self.tune_lr_factor, self.tune_arch = (
            tune_epochs,
            tune_lr_factor,
            tune_arch,
        )
        self.tune_batches, self.eval_batches = tune_batches, eval_batches
        seed = int(distributed.broadcast_float(seed))  # one edge order on every rank
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed + 4099)

    # ---- evaluation ------------------------------------------------------------------
    @torch.no_grad()
    def measure(self, module, weights: Weights, batches: Sequence[Batch]) -> tuple[float, float]:
        """(accuracy, mean loss) of the supernet mixed with ``weights`` on ``batches``; under
        DDP on all ranks' ``batches`` together (counts and sums reduced over ranks)."""
        net = module.supernet
        was_training = net.training
        net.train()
        correct, total, loss = 0, 0, 0.0
        try:
            with frozen_batch_norm_buffers(net):
                for x, y in batches:
                    w = {c: v.to(device=x.device, dtype=x.dtype) for c, v in weights.items()}
                    logits = net(x, w)
                    correct += int((logits.argmax(-1) == y).sum())
                    loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
                    total += y.shape[0]
        finally:
            net.train(was_training)
        correct, loss, total = distributed.sum_floats([correct, loss, total])
        return correct / max(total, 1), loss / max(total, 1)

    def hurt(self, stats: tuple[float, float]) -> float:
        return -stats[0] if self.criterion == "acc" else stats[1]

    @staticmethod
    def proxy_hurt(value: float) -> float:
        """How much a removal that leaves the proxy at ``value`` hurts: the lower, the more
        (higher = better for every proxy); nan (not computable) hurts least."""
        return -math.inf if math.isnan(value) else -value

    def scorer(self, module, val_batches: Sequence[Batch], proxy_batches) -> ZeroCostScore:
        """The proxy of ``module``'s supernet under a mixing; its batches: ``proxy_batches``
        (the same on every rank), else the first ``score_batches`` of ``val_batches``."""
        space = module.space
        batches = list(proxy_batches if proxy_batches is not None else val_batches)
        batches = batches[: self.score_batches]
        shape = getattr(space, "input_shape", None) or list(batches[0][0].shape[1:])
        return ZeroCostScore(self.score, module.supernet, batches, shape,
                             getattr(space, "num_classes", None), self.seed,
                             module.device)  # fmt: skip

    def _pick(self, items: list) -> Any:
        if self.edge_order == "fixed":
            return items[0]
        return items[int(torch.randint(len(items), (), generator=self.generator))]

    # ---- the procedure ---------------------------------------------------------------
    def __call__(
        self,
        module,
        val_batches: Sequence[Batch],
        tune: Callable[[], None] | None = None,
        checkpoint: PTCheckpoint | None = None,
        resume: dict[str, Any] | None = None,
        proxy_batches: Sequence[Batch] | None = None,
    ) -> dict[str, Any]:
        """Selects, writes the architecture into ``module.arch``; returns the report.

        With a proxy ``score``, ``proxy_batches`` (the same on every rank; None: the first
        ``score_batches`` of ``val_batches``) are what a data-based proxy reads.

        ``tune()`` fine-tunes the supernet with the current projection (between decisions);
        a ``Tuner`` runs epoch by epoch (``run_epoch``), with a checkpoint after each.
        ``checkpoint.save(progress)`` is called after every decision and tuning epoch;
        ``resume``: such a progress record (``PTCheckpoint.resume``) to continue from, the
        module, tuner, data and RNG states already restored.
        """
        space = module.space
        cells = list(module.arch.cell_types)
        ops = list(space.ops)
        proj = Projection({c: {} for c in cells}, {c: set() for c in cells})
        topology = has_topology(space)
        masks = module.arch.op_masks

        def base() -> Weights:
            with torch.no_grad():
                probs = module.strategy.probabilities(module.arch.as_dict())
            return proj.apply({c: probs[c].detach().float() for c in cells})

        proxy = None
        if is_proxy(self.score):
            proxy = self.scorer(module, val_batches, proxy_batches)

        def evaluate(w: Weights) -> float:
            if proxy is not None:
                return proxy(w)  # the proxy's value; how much it hurts: proxy_hurt
            return self.hurt(self.measure(module, w, val_batches))

        def unperturbed(w: Weights):
            return proxy(w) if proxy is not None else self.measure(module, w, val_batches)

        hurt = self.proxy_hurt if proxy is not None else _same

        def candidates(cell: str, edge: int) -> list[int]:
            out = [o for o, name in enumerate(ops) if not (topology and name == "none")]
            if cell in masks:
                out = [o for o in out if bool(masks[cell][edge, o])] or out
            return out

        edges = space.edges
        nodes: dict[int, list[int]] = {}
        for e, (_, node) in enumerate(edges):
            nodes.setdefault(node, []).append(e)
        multi = sorted(n for n, eids in nodes.items() if topology and len(eids) > 2)
        steps = len(edges) + len(multi)
        total = steps * len(cells)
        if resume is None:
            report: dict[str, Any] = {"selector": "pt", "score": self.score}
            if proxy is None:
                report["criterion"] = self.criterion
            report.update({
                "edge_order": self.edge_order,
                "tune_epochs": self.tune_epochs,
                "eval_batches": len(val_batches),
                "start_val_acc": self.measure(module, base(), val_batches)[0],
            })  # fmt: skip
            if proxy is not None:
                report["score_batches"] = len(proxy.batches)
                report["start_score"] = proxy(base())
            report.update({"ops": [], "topology": []})
            undecided = {c: list(range(len(edges))) for c in cells}
            pending_nodes = {c: list(multi) for c in cells}
            done, tuned = 0, 0
        else:
            if resume["total"] != total or list(resume["undecided"]) != cells:
                raise ValueError(
                    f"the DARTS-PT checkpoint has {resume['total']} decisions over cells "
                    f"{list(resume['undecided'])}; this supernet has {total} over {cells}."
                )
            proj.ops = {c: {int(e): int(o) for e, o in resume["ops"][c].items()} for c in cells}
            proj.dropped = {c: {int(e) for e in resume["dropped"][c]} for c in cells}
            undecided = {c: [int(e) for e in resume["undecided"][c]] for c in cells}
            pending_nodes = {c: [int(n) for n in resume["pending_nodes"][c]] for c in cells}
            report = copy.deepcopy(resume["report"])
            self.generator.set_state(resume["generator"])
            done, tuned = int(resume["decisions"]), int(resume["tuned"])

        def save(decisions: int, tuned_epochs: int) -> None:
            if checkpoint is None:
                return
            checkpoint.save({
                "decisions": decisions, "total": total, "tuned": tuned_epochs,
                "ops": {c: dict(proj.ops[c]) for c in cells},
                "dropped": {c: sorted(proj.dropped[c]) for c in cells},
                "undecided": {c: list(undecided[c]) for c in cells},
                "pending_nodes": {c: list(pending_nodes[c]) for c in cells},
                "report": report, "generator": self.generator.get_state(),
            })  # fmt: skip

        for step in range(steps):
            for i, cell in enumerate(cells):
                if step * len(cells) + i < done:  # made before the checkpoint resumed from
                    continue
                w = base()
                before = unperturbed(w)
                if step < len(edges):
                    edge = self._pick(undecided[cell])
                    undecided[cell].remove(edge)
                    op, scores = choose_op(evaluate, w, cell, edge, candidates(cell, edge), hurt)
                    proj.ops[cell][edge] = op
                    report["ops"].append(self._op_entry(cell, edges[edge], ops, op, before, scores))
                else:
                    node = self._pick(pending_nodes[cell])
                    pending_nodes[cell].remove(node)
                    kept, rounds = choose_edges(evaluate, w, cell, nodes[node], hurt=hurt)
                    proj.dropped[cell].update(e for e in nodes[node] if e not in kept)
                    report["topology"].append(
                        self._node_entry(cell, node, edges, kept, before, rounds)
                    )
                save(step * len(cells) + i + 1, 0)
            if tune is not None and self.tune_epochs and step < steps - 1:
                end = (step + 1) * len(cells)  # decisions made when this tuning runs
                if done > end:  # finished before the checkpoint
                    continue
                self._tune(module, proj, tune, tuned if done == end else 0, partial(save, end))
        self.write(module, proj)
        report["final_val_acc"] = self.measure(module, base(), val_batches)[0]
        if proxy is not None:
            report["final_score"] = proxy(base())
        rule = module.strategy.selection or space.default_selection
        chosen = select(rule, proj.apply(_zeros(module, cells)), space)
        genotype = module.genotype()
        # The strategy's probabilities must keep the one-hot choice. A node's kept inputs may
        # come back in another order: its one-hot rows' softmax maxima tie up to rounding.
        if _kept_edges(genotype) != _kept_edges(chosen):
            raise RuntimeError(
                f"DARTS-PT chose {chosen}, but α written as one-hot rows reads back as "
                f"{genotype} under strategy={module.strategy.name}'s probabilities."
            )
        report["genotype"] = str(genotype)
        return report

    @staticmethod
    def _tune(module, proj: Projection, tune, start: int, saved: Callable[[int], None]) -> None:
        """Tuning epochs ``start``.. of one tuning, each followed by ``saved(epochs done)``; a
        plain callable is one unit."""
        run_epoch = getattr(tune, "run_epoch", None)
        epochs, one = (tune.epochs, run_epoch) if run_epoch is not None else (1, tune)
        for e in range(start, epochs):
            tune_with(module, proj, one)  # the projection leaves the modifiers before a save
            saved(e + 1)
        if hasattr(tune, "finish"):
            tune.finish()

    def _drop(self, before, score: float) -> float:
        """How much a removal hurts: accuracy lost (acc) or loss gained (loss); with a proxy,
        how much it lowered the proxy (``before``: the unperturbed proxy)."""
        if is_proxy(self.score):
            return before - score
        return score - self.hurt(before)

    def _before(self, before) -> dict[str, float]:
        """The unperturbed mixing's value: ``val_acc``, or the proxy's ``score``."""
        return {"score": before} if is_proxy(self.score) else {"val_acc": before[0]}

    def _scores(self, scores: dict[str, float]) -> dict[str, Any]:
        """With a proxy, each removal's proxy value (the criteria are in ``drop`` otherwise)."""
        return {"scores": scores} if is_proxy(self.score) else {}

    def _op_entry(self, cell, edge, ops, op, before, scores) -> dict[str, Any]:
        return {
            "cell": cell,
            "edge": f"{edge[0]}->{edge[1]}",
            "op": ops[op],
            **self._before(before),
            **self._scores({ops[o]: s for o, s in scores.items()}),
            "drop": {ops[o]: self._drop(before, s) for o, s in scores.items()},
        }

    def _node_entry(self, cell, node, edges, kept, before, rounds) -> dict[str, Any]:
        def label(e: int) -> str:
            return f"{edges[e][0]}->{edges[e][1]}"

        return {
            "cell": cell,
            "node": node,
            "kept": [label(e) for e in kept],
            **self._before(before),
            "rounds": [
                {
                    "removed": label(r["removed"]),
                    **self._scores({label(e): s for e, s in r["scores"].items()}),
                    "drop": {label(e): self._drop(before, s) for e, s in r["scores"].items()},
                }
                for r in rounds
            ],
        }

    @staticmethod
    def write(module, proj: Projection) -> None:
        """α ← one-hot rows of the decided ops, zero rows for dropped edges; β ← 0 (uniform)."""
        values = {}
        for key, value in module.arch.as_dict().items():
            if key.startswith(BETA_PREFIX):
                values[key] = torch.zeros_like(value)
        values.update(proj.apply(_zeros(module, module.arch.cell_types)))
        module.arch.load_values(values)


def _kept_edges(genotype) -> dict[str, list]:
    """A genotype's kept (op, input, node) edges per cell type, in a fixed order."""
    return {cell: sorted(edges) for cell, edges in genotype.kept_edges().items()}


def _zeros(module, cells) -> Weights:
    return {c: torch.zeros_like(module.arch.alphas[c]).detach() for c in cells}


def tune_with(module, proj: Projection, tune: Callable[[], None]) -> None:
    """Runs ``tune()`` with the projection as an extra modifier of the strategy."""
    module.strategy.modifiers.append(proj)
    try:
        tune()
    finally:
        module.strategy.modifiers.remove(proj)


TUNE_LR_SCHEDULES = ("constant", "cosine")


class Tuner:
    """DARTS-PT's fine-tuning between decisions: the bilevel steps of the search (an α step
    with the strategy's arch-gradient mode, then a weight step), the weights' optimizer
    restarted at ``lr × lr_factor``, then constant (``schedule="constant"``: darts-pt's
    ``sota/cnn/projection.py`` builds a cosine scheduler it never steps, and
    ``nasbench201/projection.py`` has none) or cosine over all ``total_epochs`` down to the
    search's ``weight_lr_min`` (``schedule="cosine"``).

    The steps call the supernet directly (after the fit Lightning has unwrapped it from DDP),
    so under DDP the gradients are averaged over ranks here, before clipping and stepping:
    every rank takes the same steps from its own shard of the batch."""

    def __init__(self, module, data, epochs: int, total_epochs: int, lr_factor: float,
                 arch: bool = True, batches: int | None = None,
                 schedule: str = "constant"):  # fmt: skip
        if schedule not in TUNE_LR_SCHEDULES:
            raise ValueError(
                f"selection.tune_lr_schedule must be one of {', '.join(TUNE_LR_SCHEDULES)}, "
                f"got {schedule!r}."
            )
        self.module, self.data, self.epochs, self.batches = module, data, epochs, batches
        self.w_opt = module._weight_optimizer(module.supernet.parameters())
        for g in self.w_opt.param_groups:
            g["lr"] = g["initial_lr"] = g["lr"] * lr_factor
        self.sched = None
        if schedule == "cosine":
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.w_opt, T_max=max(1, total_epochs), eta_min=min(module.weight_lr_min, self.lr)
            )
        use_arch = arch and module.strategy.arch_grad is not None
        self.a_opt = module._arch_optimizer(module.arch.parameters()) if use_arch else None

    @property
    def lr(self) -> float:
        return self.w_opt.param_groups[0]["lr"]

    def _batch(self, batch: Any) -> Any:
        device = self.module.device
        batch = move_data_to_device(batch, device)  # {split: (x, y[, tag])}
        batch = self.data.transform(batch, train=True)
        if getattr(self.data, "channels_last", False):
            batch = {
                k: (x.contiguous(memory_format=torch.channels_last), y)
                for k, (x, y) in batch.items()
            }
        return batch

    def __call__(self) -> None:
        for _ in range(self.epochs):
            self.run_epoch()
        self.finish()

    def run_epoch(self) -> None:
        """One tuning epoch (``batches`` steps or a full pass), then the lr schedule's step."""
        m = self.module
        was_training = m.training
        m.train()
        try:
            for i, item in enumerate(self.data.train_dataloader()):
                if self.batches is not None and i >= self.batches:
                    break
                batch = item[0] if isinstance(item, tuple) else item
                self.step(self._batch(batch))
            if self.sched is not None:
                self.sched.step()
        finally:
            m.train(was_training)

    def finish(self) -> None:
        """After a tuning: BN running statistics saw each rank's own images: rank 0's, as DDP
        broadcasts them."""
        distributed.broadcast_(list(self.module.supernet.buffers()))

    def state_dict(self) -> dict[str, Any]:
        return {
            "w_opt": self.w_opt.state_dict(),
            "a_opt": None if self.a_opt is None else self.a_opt.state_dict(),
            "sched": None if self.sched is None else self.sched.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w_opt.load_state_dict(state["w_opt"])
        if self.a_opt is not None and state.get("a_opt") is not None:
            self.a_opt.load_state_dict(state["a_opt"])
        if self.sched is not None and state.get("sched") is not None:
            self.sched.load_state_dict(state["sched"])

    def step(self, batch: dict[str, Batch]) -> None:
        m = self.module
        train, val = batch["train"], batch["val"]
        if self.a_opt is not None:
            m.arch_step(train, val, self.a_opt)  # the search's own α step
        # The weight half is the search's weight step outside Lightning: the DDP wrapper that
        # averages the weights' gradients in the search is not there, so it is done here.
        arch = {k: a.detach() for k, a in m.arch.as_dict().items()}
        arch = m.strategy.weight_step_arch(m, arch, train)
        loss, _ = m.loss(train, arch, label_smoothing=m.label_smoothing)
        self.w_opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(m.supernet.parameters())
        if m.grad_clip:
            torch.nn.utils.clip_grad_norm_(m.supernet.parameters(), m.grad_clip)
        self.w_opt.step()


def val_batches(
    data, device: torch.device, n: int | None, channels_last: bool = False, shard: bool = True
) -> list:
    """The first ``n`` (None: all) validation batches, normalised, on ``device``; under DDP
    this rank's shard of each (``distributed.rank_shard``), unless ``shard=False``."""
    out = []
    for x, y in data.val_dataloader():
        x, y = data.transform((x.to(device), y.to(device)), train=False)
        if shard:
            x, y = distributed.rank_shard((x, y))
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append((x, y))
        if n is not None and len(out) >= n:
            break
    return out


PT_DIR = "pt"  # <run dir>/checkpoints/pt/last.ckpt
PT_KEY = "pt_selection"  # marks a DARTS-PT checkpoint; holds the selection's progress


def pt_checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints" / PT_DIR / LAST


def fingerprint(module) -> str:
    """sha256 of every tensor of ``module.state_dict()`` (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, value in module.state_dict().items():
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(value.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _load(path: str | Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=False)


def is_pt_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a readable DARTS-PT checkpoint."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:
        return False
    return isinstance(ckpt, dict) and PT_KEY in ckpt


def _data_state(data) -> dict[str, Any] | None:
    """The data position between tuning epochs: the datamodule's state, its sampler streams
    taken as they stand (the next tuning epoch's loaders start new passes from them)."""
    if not hasattr(data, "state_dict"):
        return None
    state = data.state_dict()
    gens = getattr(data, "_sampler_gens", None)
    if gens is not None:
        pending = getattr(data, "_pending_skip", {})
        state["streams"] = {
            k: {"state": g.get_state(), "skip": pending.get(k, 0)} for k, g in gens.items()
        }
    return state


class PTCheckpoint:
    """DARTS-PT's checkpoint file (module docstring): ``save(progress)`` writes it (rank 0),
    ``resume(spec)`` finds, checks and restores one and returns its progress record.

    Created right after the search, before anything is restored: it takes the fingerprint of
    the search's final state then."""

    def __init__(self, path: Path, identity: dict[str, Any], module, data, tuner: Tuner | None):
        self.path, self.identity = Path(path), identity
        self.module, self.data, self.tuner = module, data, tuner
        self.search_fingerprint = fingerprint(module)
        self.io = AtomicCheckpointIO()

    def state(self, progress: dict[str, Any]) -> dict[str, Any]:
        return {
            PT_KEY: progress,
            STAMP_KEY: self.identity,
            "search_fingerprint": self.search_fingerprint,
            "module": self.module.state_dict(),
            "strategy_state": self.module.strategy.state_dict(),
            "tuner": None if self.tuner is None else self.tuner.state_dict(),
            "rng": RNGState().state_dict(),
            "data": _data_state(self.data),
        }

    def save(self, progress: dict[str, Any]) -> None:
        if distributed.rank() == 0:
            self.io.save_checkpoint(self.state(progress), self.path)

    def load(self, path: Path) -> dict[str, Any]:
        """Reads ``path``; refuses an unreadable file, another kind of checkpoint, one of
        another config or one taken after a different search."""
        try:
            ckpt = _load(path)
        except Exception as err:
            raise ValueError(
                f"DARTS-PT checkpoint {str(path)!r} cannot be read ({type(err).__name__}: {err})."
            ) from None
        if not isinstance(ckpt, dict) or PT_KEY not in ckpt:
            raise ValueError(
                f"{str(path)!r} is not a DARTS-PT checkpoint (a checkpoints/pt/last.ckpt)."
            )
        diff = differences(ckpt.get(STAMP_KEY) or {}, self.identity)
        if diff:
            raise ValueError(
                f"DARTS-PT checkpoint {str(path)!r} belongs to a different run; refusing to "
                f"resume. Differences: {'; '.join(diff[:10])}"
                + (f" (and {len(diff) - 10} more)." if len(diff) > 10 else ".")
            )
        if ckpt.get("search_fingerprint") != self.search_fingerprint:
            raise ValueError(
                f"DARTS-PT checkpoint {str(path)!r} was taken after a different search than "
                "the one this run's search stage ended with (the search was continued or "
                "rerun since, e.g. with more trainer.max_epochs); refusing to resume. Delete it "
                "to run DARTS-PT afresh on this search."
            )
        return ckpt

    def restore(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        self.module.load_state_dict(ckpt["module"])
        self.module.strategy.load_state_dict(ckpt.get("strategy_state", {}))
        if self.tuner is not None and ckpt.get("tuner") is not None:
            self.tuner.load_state_dict(ckpt["tuner"])
        if ckpt.get("data") is not None and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(ckpt["data"])
        RNGState().load_state_dict(ckpt["rng"])
        return ckpt[PT_KEY]

    def resume(self, spec: str | None) -> dict[str, Any] | None:
        """Under ``resume=auto`` this run's checkpoint if there is one (else None, said in one
        line), under ``resume=<a DARTS-PT checkpoint>`` that file (restored; its progress
        returned); None otherwise (another path resumes the search, not the selection)."""
        if not spec:
            return None
        if spec == "auto":
            if not self.path.is_file():
                log.info(f"pt: resume=auto found no DARTS-PT checkpoint ({self.path}); starting "
                         "DARTS-PT from the beginning")  # fmt: skip
                return None
            path = self.path
        elif is_pt_checkpoint(spec):
            path = Path(spec)
        else:
            return None
        progress = self.restore(self.load(path))
        done, tuned = progress["decisions"], progress["tuned"]
        tuning = f", {tuned} tuning epoch(s) after it done" if tuned else ""
        log.info(f"pt: resuming DARTS-PT from {path}: after decision {done} of "
                 f"{progress['total']}{tuning}")  # fmt: skip
        return progress


@dataclass
class PTCheckpointing:
    """Where DARTS-PT checkpoints and what it resumes: ``<run_dir>/checkpoints/pt/last.ckpt``,
    stamped with ``identity`` (what a run resuming it must share: the search's identity and
    every ``selection`` value, ``nas.run.pt_stage.pt_identity``), continued under ``resume``
    (the run's ``resume``: ``auto``, a checkpoint path, or None)."""

    run_dir: Path
    identity: dict[str, Any]
    resume: str | None = None


def pt_select(
    s: SelectionConfig, seed: int, module, data, checkpointing: PTCheckpointing | None = None
) -> dict[str, Any]:
    """``selection=pt``: DARTS-PT on the searched ``module`` with the ``selection`` settings
    ``s`` and the run's ``seed``; writes the architecture into α and returns the report for
    ``summary.json``.

    With ``checkpointing``, checkpoints ``<run dir>/checkpoints/pt/last.ckpt`` as it goes and,
    under ``resume=auto`` (or ``resume=<that file>``), continues from it (``PTCheckpoint``)."""
    # An unknown score fails here, before any work (and when the settings are read).
    selector = PerturbationSelection(
        s.criterion, s.edge_order, s.tune_epochs, s.tune_lr_factor, s.tune_arch,
        s.tune_batches, s.eval_batches, seed, s.score, s.score_batches,
    )  # fmt: skip
    space = module.space
    n_nodes = sum(1 for n in space.edges_per_node if n > 2) if has_topology(space) else 0
    decisions = len(space.edges) + n_nodes
    total = s.tune_epochs * max(1, decisions - 1)
    checkpoint = None
    if checkpointing is not None:  # the search's final state, before the tuner or a restore
        path = pt_checkpoint_path(checkpointing.run_dir)
        checkpoint = PTCheckpoint(path, checkpointing.identity, module, data, None)
    tuner = Tuner(
        module,
        data,
        s.tune_epochs,
        total,
        s.tune_lr_factor,
        s.tune_arch,
        s.tune_batches,
        s.tune_lr_schedule,
    )
    channels_last = getattr(data, "channels_last", False)
    batches = val_batches(data, module.device, s.eval_batches, channels_last)
    proxy_batches = None
    if is_proxy(s.score):  # the full batches (every rank's alike): rank 0 computes the proxy
        proxy_batches = val_batches(data, module.device, s.score_batches, channels_last, False)
    progress = None
    if checkpoint is not None:
        checkpoint.tuner = tuner
        progress = checkpoint.resume(checkpointing.resume)
    report = selector(
        module, batches, tune=tuner if s.tune_epochs else None, checkpoint=checkpoint,
        resume=progress, proxy_batches=proxy_batches,
    )  # fmt: skip
    report["tune_lr"] = tuner.w_opt.defaults.get("lr", math.nan) * s.tune_lr_factor
    return report
