"""Black-box search over an estimator (``base``): random search, regularized evolution, local
search and BANANAS, each spending a budget of evaluations of any estimator. Importing the
package registers them."""

from nas.estimate.black_box import bananas, evolution, local_search, random_search
from nas.estimate.black_box.base import (
    METHODS,
    BlackBoxSearch,
    Evaluator,
    Moves,
    Trace,
    build_method,
    register_method,
)

__all__ = [
    "METHODS",
    "BlackBoxSearch",
    "Evaluator",
    "Moves",
    "Trace",
    "bananas",
    "build_method",
    "evolution",
    "local_search",
    "random_search",
    "register_method",
]
