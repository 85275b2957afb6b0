"""oneshot-nas: differentiable one-shot neural architecture search. The rooms, top to bottom:
``run`` → ``report`` → ``search`` / ``retrain`` → ``strategies`` → ``hardware`` / ``estimate`` →
``data`` → ``core``; ``supernet`` (candidate ops, mixed ops, spaces, kernels) is the ground floor.
ARCHITECTURE.md draws the flow.
"""
