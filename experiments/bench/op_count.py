"""ATen operations dispatched per bilevel search step: a proxy for GPU kernel launches.

On a GPU the eager search step is bound by launches, not arithmetic (``floor.py``): each ATen
operation is about one kernel (a few are several, views are none). This counts the operations
of one full step (arch step + weight step, as ``search_step.py`` runs it) with a
``TorchDispatchMode``, on CPU, for each mode, in three variants: every candidate on its own
(``per_edge``), with the edge's shared ReLU (``shared_relu``), and with the edges whose inputs
are ready together grouped into one operation per candidate (``grouped``, the default). Views and
other metadata-only operations are counted separately, since they launch nothing.

The ``gpu_like`` variant counts what a GPU step launches: the grouped supernet with the fused
Triton weighted sum (run here through Triton's interpreter; each launch counted) and the
optimizers and gradient clipping in their multi-tensor (``foreach``) form, as CUDA runs them.

    python experiments/bench/op_count.py                      # DARTS CIFAR supernet, batch 2
    python experiments/bench/op_count.py --modes first,gdas --out results/op_count.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

if not torch.cuda.is_available():  # the gpu_like variant runs the Triton kernel on the CPU
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_step import ROOT, STRATEGIES, build, environment, search_step  # noqa: E402

# Operations that only reshape or alias: no kernel on a GPU.
VIEW_OPS = {
    "view",
    "_unsafe_view",
    "reshape",
    "expand",
    "permute",
    "transpose",
    "t",
    "squeeze",
    "unsqueeze",
    "slice",
    "select",
    "as_strided",
    "alias",
    "detach",
    "split",
    "split_with_sizes",
    "unbind",
    "chunk",
    "narrow",
    "flatten",
    "unflatten",
    "_reshape_alias",
    "lift_fresh",
}


# Allocations: counted as compute operations (as ever in this file), but they launch nothing.
ALLOC_OPS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}


class OpCounter(TorchDispatchMode):
    """Counts every ATen operation dispatched while active, by name."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def share_edge_relu(net: torch.nn.Module, on: bool) -> None:
    """Switches the edges' shared ReLU (``MixedOp.relu_first``) on or off."""
    from supernet.mixed import MixedOp

    for m in net.modules():
        if isinstance(m, MixedOp):
            m.relu_first = tuple(on and hasattr(c, "after_relu") for c in m.candidates)


def group_edges(net: torch.nn.Module, on: bool) -> None:
    """Switches ``search_space.group_edges`` on or off in a built supernet."""
    for m in net.modules():
        if hasattr(m, "edge_groups"):
            m.group_edges = on


VARIANTS = {  # name: (shared edge ReLU, grouped edges, Triton sum + foreach optimizers)
    "per_edge": (False, False, False),
    "shared_relu": (True, False, False),
    "grouped": (True, True, False),
    "gpu_like": (True, True, True),
}


class Launches:
    """Counts the launches of a Triton kernel (``kernel[grid](...)``), each as one; the
    interpreter's own tensor work while it runs one is not counted."""

    def __init__(self, kernel):
        self.kernel, self.n = kernel, 0

    def __getitem__(self, grid):
        self.n += 1
        run = self.kernel[grid]

        def launch(*args, **kwargs):
            with _disable_current_modes():
                return run(*args, **kwargs)

        return launch


def foreach_clip_grad_norm_(params, max_norm: float, *args, **kwargs) -> torch.Tensor:
    """``clip_grad_norm_`` as it runs on CUDA (foreach): one norm, one scale for all."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


@contextlib.contextmanager
def gpu_like_step(module, arch_optimizer):
    """Foreach optimizers and clipping, and Triton launch counters; yields the counters."""
    from supernet.kernels import triton_mix

    w_opt = module.weight_optimizer
    module._standalone_optimizer = type(w_opt)(
        w_opt.param_groups[0]["params"], **{**w_opt.defaults, "foreach": True}
    )
    arch = type(arch_optimizer)(
        arch_optimizer.param_groups[0]["params"], **{**arch_optimizer.defaults, "foreach": True}
    )
    fwd, bwd = Launches(triton_mix._mix_fwd_kernel), Launches(triton_mix._mix_bwd_kernel)
    saved = (torch.nn.utils.clip_grad_norm_, triton_mix._mix_fwd_kernel, triton_mix._mix_bwd_kernel)
    torch.nn.utils.clip_grad_norm_ = foreach_clip_grad_norm_
    triton_mix._mix_fwd_kernel, triton_mix._mix_bwd_kernel = fwd, bwd
    try:
        yield arch, (fwd, bwd)
    finally:
        torch.nn.utils.clip_grad_norm_, triton_mix._mix_fwd_kernel, triton_mix._mix_bwd_kernel = (
            saved
        )


def count(mode: str, args: argparse.Namespace, variant: str) -> dict:
    device = torch.device("cpu")
    shared_relu, grouped, gpu_like = VARIANTS[variant]
    args.kernel = "triton" if gpu_like else "torch"
    module, arch_optimizer = build(mode, args, device)
    share_edge_relu(module.supernet, shared_relu)
    group_edges(module.supernet, grouped)
    with contextlib.ExitStack() as stack:
        launches = ()
        if gpu_like:
            arch_optimizer, launches = stack.enter_context(gpu_like_step(module, arch_optimizer))
        row = _count_step(module, arch_optimizer, mode, args)
        row["triton_launches"] = sum(k.n for k in launches) // 2  # the second of two steps
    row.update(variant=variant, shared_relu=shared_relu, group_edges=grouped, gpu_like=gpu_like)
    # Kernel launches: operations that launch one (not views, not allocations), plus Triton's.
    row["launches"] = row["compute_ops"] - row["alloc_ops"] + row["triton_launches"]
    return row


def _count_step(module, arch_optimizer, mode: str, args: argparse.Namespace) -> dict:
    g = torch.Generator().manual_seed(args.seed)
    n = args.batch[mode]

    def batch():
        x = torch.randn(n, 3, args.size, args.size, generator=g)
        return x, torch.randint(args.classes, (n,), generator=g)

    train, val = batch(), batch()
    search_step(module, arch_optimizer, train, val)  # warm-up: optimizer state, lazy init
    counter = OpCounter()
    with counter:
        search_step(module, arch_optimizer, train, val)
    views = sum(n for name, n in counter.counts.items() if name in VIEW_OPS)
    total = sum(counter.counts.values())
    return {
        "mode": mode,
        "strategy": STRATEGIES[mode],
        "ops": total,
        "view_ops": views,
        "compute_ops": total - views,
        "alloc_ops": sum(n for name, n in counter.counts.items() if name in ALLOC_OPS),
        "relu_ops": counter.counts["relu"] + counter.counts["threshold_backward"],
        "top": counter.counts.most_common(12),
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--modes", default="first,second,gdas,pcdarts")
    p.add_argument("--batch", type=int, default=2, help="the count does not depend on it")
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "experiments/bench/results/op_count.json"))
    args = p.parse_args(argv)
    # What search_step.build reads besides these.
    args.kernel, args.compile, args.compile_scope, args.compile_mode = (
        "torch",
        False,
        "edge",
        "default",
    )
    args.nonfinite, args.epochs = "stop", 50
    args.cuda_graph, args.group_edges = False, True
    args.batch = {m: args.batch for m in STRATEGIES}
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    rows = [count(mode, args, v) for mode in args.modes.split(",") for v in VARIANTS]
    head = (
        f"{'mode':<8}{'variant':>12}{'ops':>9}{'views':>8}{'compute':>9}{'triton':>8}"
        f"{'launches':>10}{'relu+bwd':>10}"
    )
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['mode']:<8}{r['variant']:>12}{r['ops']:>9}{r['view_ops']:>8}"
            f"{r['compute_ops']:>9}{r['triton_launches']:>8}{r['launches']:>10}{r['relu_ops']:>10}"
        )
    meta = environment("cpu", 0.0)
    meta.update(benchmark="op_count", what=__doc__.splitlines()[0], batch=args.batch["first"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
