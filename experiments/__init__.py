"""Paper recipes (READMEs, provenance) and benchmarks (``bench/``)."""
