"""What a search logs beyond losses: the per-edge α softmax, its entropy, the genotype, heatmaps."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from nas.arch import ArchParams


def edge_label(edge: tuple[int, int]) -> str:
    return f"{edge[0]}->{edge[1]}"


def alpha_metrics(probs: dict[str, torch.Tensor], arch: ArchParams) -> dict[str, float]:
    """Flat metric dict: ``alpha/<cell>/<input>-><node>/<op>`` and mean entropy per cell."""
    out: dict[str, float] = {}
    for cell, p in probs.items():
        rows = p.double().cpu()
        for e, edge in enumerate(arch.edges):
            for o, op in enumerate(arch.ops):
                out[f"alpha/{cell}/{edge_label(edge)}/{op}"] = float(rows[e, o])
        entropy = -(rows * rows.clamp_min(1e-12).log()).sum(-1).mean()
        out[f"alpha_entropy/{cell}"] = float(entropy)
    return out


def alpha_heatmap(probs: torch.Tensor, arch: ArchParams, title: str):
    """A matplotlib figure of one cell type's ``[edges, ops]`` probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.6 * len(arch.ops) + 2, 0.3 * len(arch.edges) + 1.5))
    im = ax.imshow(probs.cpu().numpy(), cmap="viridis", vmin=0.0, aspect="auto")
    ax.set_xticks(range(len(arch.ops)), arch.ops, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(arch.edges)), [edge_label(e) for e in arch.edges], fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


class ArchLogger(L.Callback):
    """At every search epoch end: α softmax per edge, entropies, genotype text, heatmaps (W&B).

    Reads α once per epoch, so the training step stays free of host synchronisation.
    """

    def __init__(self, images: bool = True):
        self.images = images

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        probs = pl_module.probabilities()
        metrics = alpha_metrics(probs, pl_module.arch)
        genotype = pl_module.genotype()
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                logger.log_text(
                    "search/genotype",
                    columns=["epoch", "genotype"],
                    data=[[trainer.current_epoch, str(genotype)]],
                    step=trainer.global_step,
                )
                if self.images:
                    import matplotlib.pyplot as plt

                    figs = [
                        alpha_heatmap(p, pl_module.arch, f"{c} cell, epoch {trainer.current_epoch}")
                        for c, p in probs.items()
                    ]
                    logger.log_image(
                        "search/alpha", images=figs, caption=list(probs), step=trainer.global_step
                    )
                    for f in figs:
                        plt.close(f)
