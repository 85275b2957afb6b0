"""oneshot-nas entry point in a checkout: ``python train.py [stage=...] [group=option ...]
[key=value ...]``; the same command as ``oneshot-nas`` (the console script an install adds) and
``python -m nas.run.train``.

Thin on purpose: the command lives in the package (``nas/run/train.py``), so an installed
project runs without this file. Stages, groups and options: ``python train.py --help``.
"""

from __future__ import annotations

from nas.run.train import CONFIG_DIR, main, objective, optimizing_sweep

__all__ = ["CONFIG_DIR", "main", "objective", "optimizing_sweep"]

if __name__ == "__main__":
    main()
