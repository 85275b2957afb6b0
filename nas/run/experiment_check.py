"""An experiment recipe and the command line must not contradict each other silently.

Hydra lets a command-line group choice (``data=cifar100``) win over the ``override /data:
cifar10`` in an experiment's defaults list, so ``experiment=nb201_darts search_space=darts``
would quietly run the NAS-Bench-201 recipe's sizes and schedules on the DARTS space. A recipe
names the groups it fixes; a run whose final choice of such a group differs from the recipe's
stops with an error naming both values. Key overrides (``trainer.max_epochs=10``) stay free:
they change one value the user named, not the meaning of the recipe.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

EXPERIMENT_GROUP = "experiment"


def fixed_groups(conf_dir: Path, experiment: str) -> dict[str, str]:
    """The group choices experiment ``experiment`` fixes, following the experiments it extends
    (entries of its defaults list without ``override``), later entries winning."""
    path = Path(conf_dir) / EXPERIMENT_GROUP / f"{experiment}.yaml"
    if not path.is_file():
        return {}
    fixed: dict[str, str] = {}
    for entry in OmegaConf.load(path).get("defaults", []) or []:
        if isinstance(entry, str):
            if entry != "_self_":
                fixed.update(fixed_groups(conf_dir, entry.lstrip("/").split("/")[-1]))
            continue
        for key, value in entry.items():
            key = str(key)
            if key.startswith("override "):
                fixed[key.removeprefix("override ").strip().lstrip("/")] = str(value)
    return fixed


def contradictions(conf_dir: Path, choices: dict[str, str | None]) -> list[str]:
    """The ``group=value`` pairs where the final choice differs from the experiment's."""
    experiment = choices.get(EXPERIMENT_GROUP)
    if not experiment:
        return []
    return [
        f"{group}={choices.get(group)} (the recipe has {group}={value})"
        for group, value in fixed_groups(conf_dir, experiment).items()
        if choices.get(group) is not None and choices.get(group) != value
    ]


def check_experiment_choices() -> None:
    """Under Hydra: refuses a run whose command line changes a group its experiment fixes."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    runtime = HydraConfig.get().runtime
    choices = dict(runtime.choices)
    for source in runtime.config_sources:
        if source.provider == "main" and source.schema == "file":
            bad = contradictions(Path(source.path), choices)
            if bad:
                experiment = choices[EXPERIMENT_GROUP]
                raise ValueError(
                    f"experiment={experiment} fixes groups that this run changes: "
                    f"{'; '.join(bad)}. The recipe's other values (sizes, epochs, optimizers) "
                    "were written for its own choices, so the mix is not that paper's setting. "
                    f"Drop the group override to run the recipe as published, or drop "
                    f"experiment={experiment} (e.g. '~experiment' or another experiment=) and "
                    "name the groups you want."
                )
            return
