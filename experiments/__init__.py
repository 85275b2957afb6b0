"""Paper recipes, benchmarks and result tools (``python -m experiments.collect``)."""
