"""Checks that ``search_step.py``'s step is ``SearchModule.training_step``, bit for bit.

Two identical tiny search modules take two steps on the same batches: one through the
benchmark's ``search_step``, one through ``lightning.Trainer.fit``. α and the supernet weights
must end up equal, for every mode (DARTS first and second order, GDAS, PC-DARTS) and for both
``nonfinite=stop`` and ``nonfinite=skip`` (the opt-in finiteness checks of ``training_step``).
GDAS draws its Gumbel noise from the sampler's own seeded generator, which ``deepcopy`` copies,
so both copies sample the same ops. About a minute on an idle CPU, one thread.

    python experiments/bench/verify_search_step.py
"""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search_step as bench  # noqa: E402


def max_diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def check(mode: str, nonfinite: str = "stop", steps: int = 2) -> tuple[float, float]:
    import lightning as L

    args = bench.parse_args(
        ["--C", "4", "--layers", "3", "--size", "8", "--batch", "4", "--nonfinite", nonfinite]
    )
    torch.manual_seed(0)
    ours, arch_optimizer = bench.build(mode, args, torch.device("cpu"))
    theirs = copy.deepcopy(ours)
    gen = torch.Generator().manual_seed(0)
    train = (torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen))
    val = (torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen))

    alpha_init = [a.detach().clone() for a in ours.arch.parameters()]
    for _ in range(steps):
        bench.search_step(ours, arch_optimizer, train, val)
    assert max_diff(alpha_init, ours.arch.parameters()) > 0, f"{mode}: α did not move"

    batches = [{"train": train, "val": val}] * steps
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(theirs, torch.utils.data.DataLoader(batches, batch_size=None))
    assert ours.skipped_steps == theirs.skipped_steps == 0
    return (
        max_diff(ours.arch.parameters(), theirs.arch.parameters()),
        max_diff(ours.supernet.parameters(), theirs.supernet.parameters()),
    )


def main() -> None:
    torch.set_num_threads(1)  # tiny tensors: threads only add contention on a shared CPU
    failed = False
    for mode in bench.STRATEGIES:
        for nonfinite in ("stop", "skip"):
            d_alpha, d_weights = check(mode, nonfinite)
            ok = d_alpha == 0.0 and d_weights == 0.0
            failed |= not ok
            print(
                f"{mode} (nonfinite={nonfinite}): max |Δα| = {d_alpha:.3g}, "
                f"max |Δw| = {d_weights:.3g}  {'OK' if ok else 'DIFFERS'}",
                flush=True,
            )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
