"""What a search reports per epoch, to every logger and to disk.

Per search epoch (``SearchReport``): the per-edge op distribution and its entropy, the current
genotype (text, skip and parameter-free op counts, edges changed since the last epoch), the
learning rates and the sampler's temperature as metrics; α heatmaps (coloured relative to the
uniform 1/K, genotype cells outlined) and cell diagrams as PNGs under
``<run dir>/figures/search/epoch_<n>/`` (``n`` from 1, as the console counts), sent as images to W&B; one line per epoch in
``<run dir>/search_history.jsonl``. At the end of the search ``finalize`` draws the final
genotype's figures into ``<run dir>/figures/`` (listed in ``summary.json``). The same pictures
exist with ``logger=csv`` and ``logger=none``: they are files first, W&B images second.

Reads α once per epoch, so the training step stays free of host synchronisation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from nas.core.arch import ArchParams
from nas.core.genotype import count_op, kept_edges, param_free_ops
from nas.core.resume_point import resume_point, trim_history
from nas.strategies.regularizers.hardware_cost import HardwareCost
from supernet.genotypes import Genotype

HISTORY_FILE = "search_history.jsonl"
FIGURES_DIR = "figures"


def edge_label(edge: tuple[int, int]) -> str:
    return f"{edge[0]}->{edge[1]}"


def alpha_metrics(
    probs: dict[str, torch.Tensor], arch: ArchParams, normalize: bool = False
) -> dict[str, float]:
    """Flat metric dict: ``alpha/<cell>/<input>-><node>/<op>`` and mean entropy per cell
    (``normalize``: see ``mean_entropy``)."""
    out: dict[str, float] = {}
    for cell, p in probs.items():
        rows = p.double().cpu()
        for e, edge in enumerate(arch.edges):
            for o, op in enumerate(arch.ops):
                out[f"alpha/{cell}/{edge_label(edge)}/{op}"] = float(rows[e, o])
        out[f"alpha_entropy/{cell}"] = mean_entropy(rows, normalize)
    return out


def mean_entropy(rows: torch.Tensor, normalize: bool = False) -> float:
    """Mean over edges of the op distribution's entropy (nats; log K when uniform).

    ``normalize``: each row is divided by its sum first, for independent per-op weights that
    are not a distribution (FairDARTS' σ(α)): the entropy of the normalised row, log K when an
    edge's weights are all equal, 0 when one op holds all the weight.
    """
    rows = rows.double()
    if normalize:
        rows = rows / rows.sum(-1, keepdim=True).clamp_min(1e-12)
    return float(-(rows * rows.clamp_min(1e-12).log()).sum(-1).mean())


def alpha_entropy(probs: dict[str, torch.Tensor], normalize: bool = False) -> float:
    """``mean_entropy`` averaged over the searched cell types: the ``alpha_entropy`` metric."""
    return sum(mean_entropy(p, normalize) for p in probs.values()) / len(probs)


def weight_kind(pl_module) -> tuple[bool, float | None]:
    """(whether the sampler's weights are independent per op rather than a distribution per
    edge, the heatmaps' white value): ``(True, 0.5)`` for FairDARTS' σ(α), else ``(False,
    None)`` (entropy as is, white = 1/K)."""
    sampler = pl_module.strategy.sampler
    if not sampler.independent_weights:
        return False, None
    return True, sampler.neutral_weight


def edges_changed(before, after) -> int:
    """How many kept (op, input, node) edges of ``after`` are not in ``before``."""
    if before is None:
        return 0
    old, new = kept_edges(before), kept_edges(after)
    return sum(len(set(new[c]) - set(old.get(c, ()))) for c in new)


def genotype_metrics(genotype, previous=None, ops: Sequence[str] = ()) -> dict[str, float]:
    """Counts of the current genotype; ``genotype/skip_connect`` only where the space's ``ops``
    have a skip connection (the MobileNet chain's identity is its ``zero`` choice, counted in
    ``genotype/param_free_ops``)."""
    out = {
        "genotype/param_free_ops": float(param_free_ops(genotype)),
        "genotype/edges_changed": float(edges_changed(previous, genotype)),
    }
    if not ops or "skip_connect" in ops:
        out["genotype/skip_connect"] = float(count_op(genotype, "skip_connect"))
    return out


def cost_metrics(pl_module, genotype) -> dict[str, float]:
    """Per hardware-cost regularizer (ProxylessNAS, FBNet, ``HardwareCost``): the expected
    cost under the current α that its penalty sees (``cost/expected_<kind>``) and the cost of
    the current argmax architecture at the search network's size (``cost/argmax_<kind>``),
    from the regularizer's own tables (latency: ms of its lookup table)."""
    out: dict[str, float] = {}
    for reg in pl_module.strategy.regularizers:
        cm = reg.cost_model if isinstance(reg, HardwareCost) else None
        if cm is None or (reg.kind == "latency" and cm.latency is None):
            continue
        with torch.no_grad():
            expected = reg.expected(pl_module.arch.as_dict(), pl_module.arch.op_masks)
        out[f"cost/expected_{reg.kind}"] = float(expected)
        try:
            out[f"cost/argmax_{reg.kind}"] = cm.genotype_cost(pl_module.space, genotype, reg.kind)
        except ValueError:  # a genotype op the tables do not price (none here; kept safe)
            pass
    return out


def schedule_metrics(pl_module) -> dict[str, float]:
    """The α optimizer's learning rate and the sampler's temperature τ, where it has one (the
    weights' rate is logged by the module after its scheduler steps)."""
    out: dict[str, float] = {}
    trainer = pl_module._trainer
    if trainer is not None and len(trainer.optimizers) > 1:
        out["lr/arch"] = float(trainer.optimizers[1].param_groups[0]["lr"])
    tau = pl_module.strategy.sampler.tau
    if tau is not None:
        out["temperature/tau"] = float(tau)
    return out


def cell_name(cell: str) -> str:
    """``normal cell``, ``reduce cell``; NAS-Bench-201's one cell type is called ``cell``."""
    return cell if cell == "cell" else f"{cell} cell"


def draw_figures(
    probs,
    arch: ArchParams,
    genotype,
    out_dir: Path,
    title: str,
    centre: float | None = None,
    labels: Callable[[str], tuple[list[str], list[list[str]]] | None] | None = None,
) -> dict[str, Path]:
    """α heatmaps and cell diagrams of ``genotype`` as PNGs in ``out_dir``: ``alpha_<cell>``,
    ``cell_<cell>`` (one per searched cell type); ``centre``: the heatmaps' white value (None:
    1/K). ``labels``: the space's ``alpha_labels`` (cell -> (row labels, each row's choice
    names), or None); where it names a cell's rows, that cell's α is a ``decision_heatmap``
    (one row per decision, its own choices), else an ``alpha_heatmap`` (edges x ops)."""
    from nas.search.figures import (
        alpha_heatmap,
        chosen_cells,
        decision_heatmap,
        genotype_figures,
        save_png,
    )

    marks = chosen_cells(genotype, arch.edges, arch.ops)
    paths: dict[str, Path] = {}
    for cell, p in probs.items():
        named = labels(cell) if labels is not None else None
        p = p.detach().double().cpu()
        if named is not None:
            rows, names = named
            fig = decision_heatmap(
                p, rows, names, marks.get(cell, ()),
                title=f"{title}: α per decision (outlined: chosen)", centre=centre,
            )  # fmt: skip
        else:
            fig = alpha_heatmap(
                p, arch.ops, arch.edges, marks.get(cell, ()),
                title=f"{title}: {cell_name(cell)} α (outlined: kept by the genotype)",
                centre=centre,
            )  # fmt: skip
        paths[f"alpha_{cell}"] = save_png(fig, out_dir / f"alpha_{cell}.png")
    for cell, fig in genotype_figures(genotype, title_prefix=f"{title}: ").items():
        paths[f"cell_{cell}"] = save_png(fig, out_dir / f"cell_{cell}.png")
    return paths


def wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def log_images(loggers, paths: dict[str, Path], prefix: str, step: int) -> None:
    for logger in loggers:
        for name, path in paths.items():
            logger.log_image(f"{prefix}/{name}", images=[str(path)], step=step)


class SearchReport(L.Callback):
    """Per search epoch: metrics to every logger, figures to disk and W&B, a history line.

    Args:
        run_dir: the run directory (figures and the history file go there).
        images: draw the per-epoch figures (``logger.alpha_images``).
        final_images: draw the final genotype's figures (``logger.final_figures``).
        extras: diagnostic callbacks (``nas.search.hessian.HessianDiagnostic``) that run before this
            one; their ``history_fields()`` join the epoch's history line.
    """

    def __init__(
        self,
        run_dir: Path | str,
        images: bool = True,
        extras: list | tuple = (),
        final_images: bool = True,
    ):
        self.run_dir = Path(run_dir)
        self.images = images
        self.final_images = final_images
        self.extras = list(extras)
        # Last epoch's genotype (edges changed), as its genotype.json text: complete for every
        # space (a module genotype's text form lacks its options).
        self.previous: str | None = None
        # A staged search (P-DARTS) is one fit per stage, each counting epochs from 0: the
        # history and figures count on across stages (nas/run/progressive_depth.py sets these).
        self.stage: int | None = None
        self.epoch_offset = 0
        self.total_epochs: int | None = None

    def begin_stage(self, index: int, epoch_offset: int, total_epochs: int) -> None:
        self.stage, self.epoch_offset, self.total_epochs = index, epoch_offset, total_epochs

    def state_dict(self) -> dict[str, Any]:
        return {"previous": self.previous}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous = state.get("previous")

    def _previous_genotype(self, pl_module):
        if self.previous is None:
            return None
        from nas.core.genotype import parse_genotype_text

        if self.previous.startswith("{"):
            previous = Genotype.from_dict(json.loads(self.previous), source="the previous epoch")
            return pl_module.space.resolve(previous)
        return parse_genotype_text(self.previous, pl_module.space.name)  # an older checkpoint

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        # A resumed search redoes the epochs after its checkpoint: their lines go.
        if trainer.ckpt_path and trainer.is_global_zero:
            done = self.epoch_offset + resume_point(trainer)[0]
            trim_history(self.run_dir / HISTORY_FILE, done)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        probs = pl_module.probabilities()
        genotype = pl_module.genotype()
        independent, centre = weight_kind(pl_module)
        scalars = {
            "alpha_entropy": alpha_entropy(probs, independent),
            **genotype_metrics(genotype, self._previous_genotype(pl_module), pl_module.arch.ops),
            **schedule_metrics(pl_module),
            **cost_metrics(pl_module, genotype),
        }
        params = pl_module.space.genotype_params(genotype)
        if params is not None:  # the current architecture's size (a model's own decisions)
            scalars["genotype/params"] = float(params)
        # Through the module: every logger, and the bar shows skips and entropy.
        pl_module.log_dict(scalars, on_step=False, on_epoch=True, sync_dist=False)
        self.previous = json.dumps(genotype.to_dict())
        if not trainer.is_global_zero:
            return
        epoch, step = self.epoch_offset + trainer.current_epoch, trainer.global_step
        for logger in trainer.loggers:
            alphas = alpha_metrics(probs, pl_module.arch, independent)
            # The fit's own epoch, as Lightning's rows carry (a resume trims a stage's rows by it).
            logger.log_metrics({**alphas, "epoch": trainer.current_epoch}, step=step)
        extra = {k: v for c in self.extras for k, v in c.history_fields().items()}
        stage = {} if self.stage is None else {"stage": self.stage}
        history = {"epoch": epoch, **stage, "step": step, **scalars, **extra}
        history["genotype"] = str(genotype)
        with open(self.run_dir / HISTORY_FILE, "a") as f:
            f.write(json.dumps(history) + "\n")
        loggers = wandb_loggers(trainer)
        for logger in loggers:
            logger.log_text(
                "search/genotype",
                columns=["epoch", "genotype"],
                data=[[epoch, str(genotype)]],
                step=step,
            )
        if self.images:
            # Counted from 1, as the console counts epochs (history and metrics keep Lightning's 0).
            out_dir = self.run_dir / FIGURES_DIR / "search" / f"epoch_{epoch + 1:03d}"
            title = f"epoch {epoch + 1}/{self.total_epochs or trainer.max_epochs}"
            paths = draw_figures(
                probs, pl_module.arch, genotype, out_dir, title, centre,
                labels=pl_module.space.alpha_labels,
            )  # fmt: skip
            log_images(loggers, paths, "search", step)

    def finalize(self, trainer: L.Trainer, pl_module) -> dict[str, str]:
        """The final genotype's heatmaps and cell diagrams in ``<run dir>/figures/`` (and W&B
        under ``final/``); returns ``{name: path}`` for ``summary.json``."""
        if not trainer.is_global_zero or not self.final_images:
            return {}
        paths = draw_figures(
            pl_module.probabilities(), pl_module.arch, pl_module.genotype(),
            self.run_dir / FIGURES_DIR, "final", weight_kind(pl_module)[1],
            labels=pl_module.space.alpha_labels,
        )  # fmt: skip
        log_images(wandb_loggers(trainer), paths, "final", trainer.global_step)
        return {name: str(path) for name, path in paths.items()}
