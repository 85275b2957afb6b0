"""What several test modules share, by theme; test modules import from here, never from each
other (a test module is collected, parametrized and run, not used as a library).

- ``paths``: the repository's root and ``conf/``.
- ``config``: composed configs (Hydra): any overrides, a paper recipe, a DDP run.
- ``runs``: ``train.py`` in this process, and reading and comparing what a run wrote.
- ``modules``: tiny spaces, search modules and batches built without Hydra.
- ``twins``: two networks that must compute the same (values, gradients, statistics).
- ``wandb_records``: what an offline W&B run logged, read back from its file.
"""
