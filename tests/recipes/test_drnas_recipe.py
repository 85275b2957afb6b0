"""DrNAS as the official code runs it (xiangning-chen/DrNAS): α frozen for the first epochs of
each progressive stage, the genotype from softmax(α), bare pools in the DARTS-space op set, and
the two recipes composing to the official networks."""

from __future__ import annotations

import pytest
import torch

from nas.strategies.modifiers import ProgressiveLearning
from nas.strategies.samplers import DirichletSampler
from nas.strategies.selection.top_k import darts_top2
from supernet.mixed import MixedOp
from supernet.ops import PoolBN
from supernet.spaces.darts import DARTS_OPS, DartsSpace
from tests.helpers.config import compose_recipe
from tests.helpers.modules import nb201, random_batch, search_module

DRNAS_OPS = [op for op in DARTS_OPS if op != "none"]  # DrNAS' DARTS-space PRIMITIVES


def test_warmup_freezes_alpha_at_the_start_of_every_stage():
    prog = ProgressiveLearning(ks=[6, 4], keep=[4], switch_epochs=[25], warmup=10)
    active = [e for e in range(50) if prog.updates_arch(e)]
    assert active == [*range(10, 25), *range(35, 50)]
    assert all(ProgressiveLearning(warmup=0).updates_arch(e) for e in range(50))
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        ProgressiveLearning(warmup=-1)


class _Trainer:
    """Just what ``SearchModule.updates_arch`` reads of a trainer."""

    def __init__(self, epoch: int):
        self.current_epoch = epoch


def test_search_module_skips_the_arch_step_in_a_stage_warmup(monkeypatch):
    torch.manual_seed(0)
    prog = ProgressiveLearning(ks=[2, 1], keep=[3], switch_epochs=[2], warmup=1)
    m = search_module(nb201(C=4), DirichletSampler(), modifiers=[prog])
    for epoch, expected in [(0, False), (1, True), (2, False), (3, True)]:
        monkeypatch.setattr(type(m), "current_epoch", property(lambda self, e=epoch: e))
        assert m.updates_arch() is expected


def test_drnas_probabilities_are_softmax_of_alpha_by_default_and_the_mean_on_request():
    a = {"cell": torch.randn(6, 5)}
    torch.testing.assert_close(DirichletSampler().probabilities(a)["cell"], a["cell"].softmax(-1))
    conc = torch.nn.functional.elu(a["cell"]) + 1
    torch.testing.assert_close(
        DirichletSampler(probabilities="mean").probabilities(a)["cell"],
        conc / conc.sum(-1, keepdim=True),
    )
    with pytest.raises(ValueError, match=r"softmax, mean, got 'mode'"):
        DirichletSampler(probabilities="mode")


def test_the_two_rules_can_pick_different_edges_and_softmax_follows_the_official_ranking():
    """Node 2's two inputs are always kept; node 3 chooses 2 of its 3 edges by their strongest
    op. For α <= 0 both rules give exp(α) / Σ (ELU(α) + 1 = exp(α)); for α > 0 the Dirichlet
    mean grows linearly and softmax exponentially. Edge 0 -> 3 has one positive α (softmax
    0.356, mean 0.268); edges 1 -> 3 and 2 -> 3 one zero over negatives (0.323 and 0.291 under
    both): softmax keeps inputs 0 and 1 (the official genotype()), the mean inputs 1 and 2."""
    space = DartsSpace((3, 8, 8), 10, ops=DRNAS_OPS, C=4, layers=3, steps=2, multiplier=2)
    alpha = torch.zeros(5, 7)
    alpha[2, 3] = 1.2
    alpha[3] = -1.05
    alpha[3, 4] = 0.0
    alpha[4] = -0.9
    alpha[4, 5] = 0.0
    arch = {"normal": alpha, "reduce": alpha}
    soft = darts_top2(DirichletSampler().probabilities(arch), space)
    mean = darts_top2(DirichletSampler(probabilities="mean").probabilities(arch), space)
    softmax_inputs = sorted(j for _, j in soft.normal[2:4])
    mean_inputs = sorted(j for _, j in mean.normal[2:4])
    assert (softmax_inputs, mean_inputs) == ([0, 1], [1, 2])
    probs = alpha.softmax(-1)
    # The official rule: the two edges with the largest softmax(α) entry.
    ranked = sorted(range(2, 5), key=lambda e: -probs[e].max().item())[:2]
    assert softmax_inputs == sorted(e - 2 for e in ranked)


def test_bare_pools_drop_the_search_bn_and_keep_everything_else():
    kw = dict(ops=DRNAS_OPS, C=4, layers=3, steps=2, multiplier=2)
    bare = DartsSpace((3, 8, 8), 10, pool_bn=False, **kw).build_supernet()
    with_bn = DartsSpace((3, 8, 8), 10, **kw).build_supernet()
    assert not any(isinstance(m, PoolBN) for m in bare.modules())
    assert any(isinstance(m, PoolBN) for m in with_bn.modules())
    mixed = [m for m in bare.modules() if isinstance(m, MixedOp)]
    pools = [m.candidates[0] for m in mixed]
    assert all(isinstance(p, torch.nn.MaxPool2d) for p in pools)
    # A pickled copy (DDP spawn) keeps the bare-pool builder.
    import pickle

    again = pickle.loads(pickle.dumps(bare))
    assert not any(isinstance(m, PoolBN) for m in again.modules())
    x, _ = random_batch(n=4, classes=10)
    weights = {c: torch.full((5, 7), 1 / 7) for c in ("normal", "reduce")}
    assert bare(x, weights).shape == (4, 10)


def test_darts_space_recipe_is_the_official_search_and_retrain():
    cfg = compose_recipe("drnas_cifar10")
    ss, s, r = cfg.search_space, cfg.strategy, cfg.retrain
    assert (ss.C, ss.layers, list(ss.ops), ss.pool_bn) == (36, 20, DRNAS_OPS, False)
    prog = s.modifiers[0]
    assert (list(prog.ks), list(prog.keep), list(prog.switch_epochs), prog.warmup) == (
        [6, 4],
        [4],
        [25],
        10,
    )
    assert s.regularizers == [] and s.arch_optimizer.weight_decay == 1e-3
    assert (s.weight_optimizer.lr, s.weight_lr_min) == (0.1, 0.0)
    # Every K divides every cell's channels (36, 72, 144).
    for k in prog.ks:
        assert all(c % k == 0 for c in (36, 72, 144))
    assert (r.batch_size, r.drop_path, r.C, r.layers) == (64, 0.3, 36, 20)


def test_nb201_recipe_is_the_progressive_script():
    cfg = compose_recipe("nb201_drnas")
    s = cfg.strategy
    prog = s.modifiers[0]
    assert (list(prog.ks), list(prog.keep), list(prog.switch_epochs), prog.warmup) == (
        [4, 2],
        [3],
        [50],
        10,
    )
    assert cfg.trainer.max_epochs == 100
    assert (s.weight_optimizer.lr, s.weight_optimizer.weight_decay) == (0.025, 3e-4)
    assert s.weight_optimizer.nesterov is False and cfg.search_space.track_running_stats


def test_kl_variant_turns_the_alpha_weight_decay_off():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import train

    GlobalHydra.instance().clear()
    with initialize_config_dir(train.CONFIG_DIR, version_base="1.3", job_name="train"):
        cfg = compose("config", overrides=["strategy=drnas_kl"])
    assert cfg.strategy.arch_optimizer.weight_decay == 0.0
    assert cfg.strategy.regularizers[0]["_target_"].endswith("DirichletKL")
