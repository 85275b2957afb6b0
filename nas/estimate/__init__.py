"""Performance estimation beside weight sharing.

Estimators score a found architecture without training it (``base.Estimator``: the tabular
and surrogate benchmarks); zero-cost proxies score an untrained child network (``proxies``);
predictors learn accuracy from evaluated architectures (``predictors`` on ``encodings``);
``correlate`` measures any of them against ground truth; ``black_box`` searches over any of
them. Importing this package registers the built-in estimators, proxies and search methods.
"""

from nas.estimate import benchmark, black_box, proxies
from nas.estimate.base import ESTIMATORS, Estimator, build_estimator, register_estimator

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "benchmark",
    "black_box",
    "build_estimator",
    "proxies",
    "register_estimator",
]
