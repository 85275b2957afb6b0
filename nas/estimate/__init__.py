"""Performance estimation beside weight sharing: estimators score a found architecture without
training it (``base.Estimator``; the tabular benchmark lookup, ``benchmark``). Importing this
package registers the built-in estimators."""

from nas.estimate import benchmark
from nas.estimate.base import ESTIMATORS, Estimator, build_estimator, register_estimator

__all__ = ["ESTIMATORS", "Estimator", "benchmark", "build_estimator", "register_estimator"]
