"""What a network of a dataset takes as input, as a random example batch: the exports' check
and latency batches (``nas.retrain.export``). Images: float32 [N, C, H, W] drawn from a standard
normal (normalized pixels); token datasets: int64 token ids [N, T] uniform over the
vocabulary (``num_classes``)."""

from __future__ import annotations

import torch

from nas.data.config import DataConfig
from nas.data.datasets import is_token_dataset


def example_input(
    cfg: DataConfig,
    batch: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A random input batch of ``batch`` samples of ``cfg.input_shape`` (module docstring);
    ``generator`` (a CPU one) makes it reproducible, then it moves to ``device``."""
    shape = (int(batch), *(int(s) for s in cfg.input_shape))
    if is_token_dataset(cfg.name):
        x = torch.randint(0, int(cfg.num_classes), shape, generator=generator)
    else:
        x = torch.randn(shape, generator=generator)
    return x.to(device)


def input_description(cfg: DataConfig) -> dict[str, str]:
    """``input`` and ``output`` of the exported network, in words (``model.json``)."""
    if is_token_dataset(cfg.name):
        (context,) = (int(s) for s in cfg.input_shape)
        return {
            "input": f"int64 token ids [N, {context}] (any N): N windows of {context} tokens, "
            "made from text by `preprocessing.to_tokens`",
            "output": f"logits [N * {context}, num_classes]: row n * {context} + t scores the "
            "token after token t of window n (softmax for probabilities)",
        }
    return {
        "input": "float32 NCHW batch [N, *input_shape] (any N), made from raw images by "
        "`preprocessing.formula`",
        "output": "logits [N, num_classes] (softmax for probabilities)",
    }
