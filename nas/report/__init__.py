"""Results across runs: a multirun's table and figures (``collect``), W&B runs (``collect_wandb``)
and the Hydra callback that collects a sweep when it ends (``sweep_callback``).
"""
