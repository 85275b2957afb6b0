"""The search step's hyperparameters and their one home of defaults.

``SearchModule`` takes them (``SearchModule(..., **settings)``) and the strategy schema
(``nas/run/schema.py``, ``StrategyConfig``) takes its defaults from here, so a default is
written once. No torch import: the schema reads this at compose time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class SearchSettings:
    """How the bilevel step runs, beside the optimizers themselves.

    Attributes:
        weight_lr_min: final learning rate of the weight cosine schedule over ``max_epochs``.
        grad_clip: max gradient norm of the weight step (0 = no clipping).
        alpha_init_std: α is initialised as ``alpha_init_std * randn``.
        arch_start_epoch: epochs of weight-only warm-up before α is updated.
        arch_every: one α step every this many weight steps (ProxylessNAS: 5), on the steps
            whose index within the epoch + 1 is a multiple of it.
        label_smoothing: of the weight step's cross-entropy (ProxylessNAS: 0.1); the α step's
            loss stays plain cross-entropy.
        lr_warmup_epochs, lr_warmup_peak: a weight lr warm-up cosine of its own from the peak
            over the first epochs, then the cosine restarts from the optimizer's lr
            (ProxylessNAS; ``nas/core/lr_schedules.py``); 0 = one cosine over the search.
    """

    weight_lr_min: float = 0.001
    grad_clip: float = 5.0
    alpha_init_std: float = 1e-3
    arch_start_epoch: int = 0
    arch_every: int = 1
    label_smoothing: float = 0.0
    lr_warmup_epochs: int = 0
    lr_warmup_peak: float = 0.05

    def __post_init__(self) -> None:
        if self.arch_every < 1:
            raise ValueError(
                f"strategy.arch_every={self.arch_every}: one α step every N weight steps "
                "needs N >= 1."
            )

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def of(cls, **options: Any) -> SearchSettings:
        """``SearchSettings(**options)``; an unknown key is an error naming the valid ones."""
        unknown = [k for k in options if k not in cls.names()]
        if unknown:
            raise ValueError(
                f"{unknown[0]}={options[unknown[0]]!r} is not a search setting; the settings "
                f"are: {', '.join(cls.names())}."
            )
        return cls(**options)
