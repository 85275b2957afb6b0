"""Tabular and surrogate benchmarks of found architectures, read from their published files.

- ``nb201_file``: NAS-Bench-201 / NATS-Bench (topology) results straight from the benchmark's
  files, without its API package (the ``benchmark`` estimator, ``nas/estimate/benchmark.py``).
- ``hw_nas_bench``: HW-NAS-Bench's per-device latency and energy (estimator ``hw_nas_bench``).
- ``nb301``: NAS-Bench-301's surrogate prediction for DARTS cells (estimator ``nb301``).
- ``files``: the restricted unpickler and the file hash they share.

``nas.estimate.benchmark`` imports the estimator modules, so ``import nas.estimate`` registers
them.
"""
