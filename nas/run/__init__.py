"""From a composed Hydra config to a finished run: the config schema, the stages, builders,
console, checkpoints and resume, guards, W&B and ``summary.json``. The only room that reads the
raw ``DictConfig``; the rooms below take typed arguments.
"""
