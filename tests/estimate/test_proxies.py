"""Zero-cost proxies (``nas.estimate.proxies``): each proxy's value against a hand computation or
an independent formula on tiny networks, every proxy on the child network of every space, and
the registry's and the inputs' errors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.core.genotype import resolve_genotype
from nas.estimate.proxies import PROXIES, ProxyInputs, get_proxy
from nas.estimate.proxies.macs import conv_linear_macs
from nas.hardware.profile import count_macs, count_params
from supernet.genotypes import NB201Genotype
from supernet.spaces import build_space

DT = torch.float64
SHAPE = (3, 8, 8)
NB201_ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+"
    "|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
)
DATA_FREE = {"params", "flops", "synflow", "zen", "l2_norm"}
ALL = DATA_FREE | {"snip", "grasp", "fisher", "grad_norm", "jacov", "nwot", "zico", "meco"}


def score(name: str, model: nn.Module, batches=(), shape=SHAPE, classes: int = 5, seed=0) -> float:
    return get_proxy(name).score(
        ProxyInputs(model, shape, classes, batches=list(batches), seed=seed)
    )


def images(n: int, shape=SHAPE, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=dtype), torch.randint(0, 5, (n,), generator=g)


# --- a tiny MLP with a numpy forward and backward pass --------------------------------------

MLP_SHAPE = (1, 2, 3)  # flattened: 6 inputs


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).to(DT)


def mlp_batch(n: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *MLP_SHAPE, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g)


def numpy_mlp(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """Forward and backward of Linear-ReLU-Linear with the mean cross-entropy, by hand."""
    W1, b1 = net[1].weight.detach().numpy(), net[1].bias.detach().numpy()
    W2, b2 = net[3].weight.detach().numpy(), net[3].bias.detach().numpy()
    X = x.reshape(len(x), -1).numpy()
    n = len(X)
    pre = X @ W1.T + b1
    h = np.maximum(pre, 0)
    z = h @ W2.T + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(3)[y.numpy()]) / n
    dpre = (dz @ W2) * (pre > 0)
    return {
        "W1": W1, "W2": W2, "X": X, "pre": pre, "z": z, "dz": dz, "dpre": dpre,
        "dW1": dpre.T @ X, "dW2": dz.T @ h,
    }  # fmt: skip


# --- the child networks of the three spaces ----------------------------------------------------


@pytest.fixture(scope="module")
def children() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    darts = build_space("darts", SHAPE, 5)  # 3 cells: normal, reduce, reduce
    nb201 = build_space("nb201", SHAPE, 5, C=4, layers=1)
    mbconv = build_space("mbconv", SHAPE, 5, C=4, layers=1)
    return {
        "darts": darts.build_child(resolve_genotype("darts_v2"), C=4, layers=3, auxiliary=True),
        "nb201": nb201.build_child(NB201Genotype.from_text(NB201_ARCH), C=4, layers=1),
        "mbconv": mbconv.build_child(mbconv.reference_genotype()),
    }


def hooks_of(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("space", ["darts", "nb201", "mbconv"])
@pytest.mark.parametrize("name", sorted(ALL))
def test_every_proxy_scores_every_space_child_and_leaves_it_usable(children, space, name):
    def copied() -> nn.Module:
        net = copy.deepcopy(children[space])
        net.classifier.bias.requires_grad_(False)  # a frozen parameter stays frozen
        return net

    net = copied()
    batches = [] if name in DATA_FREE else [images(6, seed=3)]
    value = score(name, net, batches)
    assert isinstance(value, float) and math.isfinite(value)
    assert score(name, copied(), batches) == pytest.approx(value, rel=1e-6)  # deterministic
    assert hooks_of(net) == 0
    assert net.training and all(m.training for m in net.modules())
    assert not net.classifier.bias.requires_grad
    assert all(p.requires_grad for n, p in net.named_parameters() if n != "classifier.bias")
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert all("forward" not in m.__dict__ for m in net.modules())
    net(images(2)[0])  # still runs


def test_the_registry_holds_every_proxy_and_refuses_an_unknown_name():
    assert set(PROXIES) == ALL
    assert {n for n, p in PROXIES.items() if p.data_free} == DATA_FREE
    assert all(p.paper and p.name == n for n, p in PROXIES.items())
    with pytest.raises(ValueError, match="estimate.proxies: unknown zero-cost proxy 'nope'") as e:
        get_proxy("nope")
    assert all(n in str(e.value) for n in ALL)


@pytest.mark.parametrize("name", sorted(ALL - DATA_FREE))
def test_a_data_proxy_without_batches_is_refused_naming_the_setting(name):
    with pytest.raises(ValueError, match=f"'{name}' reads data.*estimate.batches >= 1"):
        score(name, mlp(), [], shape=MLP_SHAPE, classes=3)


# --- params, flops, l2_norm ---------------------------------------------------------------------


def test_params_counts_trainable_parameters_without_the_auxiliary_head(children):
    net = mlp()
    assert score("params", net, shape=MLP_SHAPE) == 6 * 4 + 4 + 4 * 3 + 3
    net[3].bias.requires_grad_(False)
    assert score("params", net, shape=MLP_SHAPE) == 6 * 4 + 4 + 4 * 3
    darts = children["darts"]
    total = sum(p.numel() for p in darts.parameters())
    aux = sum(p.numel() for p in darts.auxiliary.parameters())
    assert score("params", darts) == count_params(darts) == total - aux


def test_flops_counts_conv_and_linear_macs_by_hand():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 8x8 out: 4*64 outputs * 3*9 MACs each
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2),  # 4x4 out: 4*16 * 2*9
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),  # 5 * 4
    )
    assert score("flops", net) == 4 * 64 * 27 + 4 * 16 * 18 + 20
    assert net.training  # counted in eval mode, mode restored


@pytest.mark.parametrize("space", ["darts", "nb201", "mbconv"])
def test_flops_equals_the_hardware_mac_counter_on_the_children(children, space):
    net = children[space]
    assert conv_linear_macs(net, SHAPE) == count_macs(net, SHAPE) > 0
    assert score("flops", net) == count_macs(net, SHAPE)


def test_l2_norm_sums_the_norms_of_conv_and_linear_weights():
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(128, 3))
    with torch.no_grad():
        net[0].weight.fill_(2.0)  # 6 entries: norm 2*sqrt(6)
        net[1].weight.fill_(100.0)  # batch norm and biases are not counted
        net[3].weight.fill_(-0.5)  # 384 entries: norm 0.5*sqrt(384)
    assert score("l2_norm", net) == pytest.approx(2 * math.sqrt(6) + 0.5 * math.sqrt(384))


# --- synflow ------------------------------------------------------------------------------------


def test_synflow_of_a_two_layer_linear_net_is_twice_the_synaptic_flow():
    """For bias-free linear layers R = 1ᵀ|W2||W1|1 is linear in each layer's weights, so each
    layer's Σ θ dR/dθ is R (Euler): synflow = 2R. The batch norm is switched off (with it, a
    train-mode BatchNorm1d could not even take the one image)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(6, 5, bias=False), nn.BatchNorm1d(5), nn.ReLU(),
        nn.Linear(5, 3, bias=False),
    )  # fmt: skip
    W1, W2 = net[1].weight.detach().double().abs(), net[4].weight.detach().double().abs()
    R = float(torch.ones(3, dtype=DT) @ W2 @ W1 @ torch.ones(6, dtype=DT))
    assert score("synflow", net, shape=MLP_SHAPE) == pytest.approx(2 * R, rel=1e-12)
    assert (net[1].weight >= 0).all() and net[1].weight.dtype == torch.float32


def test_synflow_of_a_conv_net_is_its_depth_times_the_flow_computed_by_hand():
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5, bias=False),
    )  # fmt: skip
    W = [net[i].weight.detach().double().abs() for i in (0, 3, 8)]
    h = F.conv2d(torch.ones(1, *SHAPE, dtype=DT), W[0], padding=1)
    h = F.conv2d(h, W[1], stride=2, padding=1)
    R = float(F.linear(h.mean((2, 3)), W[2]).sum())
    assert score("synflow", net) == pytest.approx(3 * R, rel=1e-12)


# --- snip, grad_norm, grasp, fisher ---------------------------------------------------------------


def test_snip_and_grad_norm_against_a_hand_written_backward_pass():
    net, (x, y) = mlp(), mlp_batch()
    ref = numpy_mlp(net, x, y)
    snip = np.abs(ref["W1"] * ref["dW1"]).sum() + np.abs(ref["W2"] * ref["dW2"]).sum()
    norm = np.linalg.norm(ref["dW1"]) + np.linalg.norm(ref["dW2"])
    assert score("snip", net, [(x, y)], MLP_SHAPE, 3) == pytest.approx(snip, rel=1e-10)
    assert score("grad_norm", net, [(x, y)], MLP_SHAPE, 3) == pytest.approx(norm, rel=1e-10)
    # Two batches are one concatenated batch.
    halves = [(x[:2], y[:2]), (x[2:], y[2:])]
    assert score("snip", net, halves, MLP_SHAPE, 3) == pytest.approx(snip, rel=1e-10)


def test_grasp_is_minus_theta_dot_hessian_gradient_product_of_an_explicit_hessian():
    net, (x, y) = mlp(), mlp_batch()
    b1, b2 = net[1].bias.detach(), net[3].bias.detach()
    theta = torch.cat([net[1].weight.detach().flatten(), net[3].weight.detach().flatten()])

    def loss(t: torch.Tensor) -> torch.Tensor:
        W1, W2 = t[:24].view(4, 6), t[24:].view(3, 4)
        return F.cross_entropy(F.linear(F.relu(F.linear(x.flatten(1), W1, b1)), W2, b2), y)

    H = torch.autograd.functional.hessian(loss, theta)
    g = torch.autograd.functional.jacobian(loss, theta)
    expected = float(-theta @ (H @ g))
    assert score("grasp", net, [(x, y)], MLP_SHAPE, 3) == pytest.approx(expected, rel=1e-10)


def test_grasp_double_backprop_through_the_child_kernels_matches_finite_differences(children):
    """Hg on the DARTS child (separable and dilated convs through ``op_kernels``' custom
    backward) against the central difference of the gradient along g, in double precision."""
    net = copy.deepcopy(children["darts"]).to(DT)
    x, y = images(4, seed=5, dtype=DT)
    value = score("grasp", net, [(x, y)])
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    theta = [w.detach().clone() for w in weights]

    def grads() -> list[torch.Tensor]:
        out = torch.autograd.grad(F.cross_entropy(net(x)[0], y), weights, allow_unused=True)
        return [torch.zeros_like(w) if o is None else o for w, o in zip(weights, out)]

    g, eps = grads(), 1e-6
    diffs = []
    for sign in (1, -1):
        with torch.no_grad():
            for w, t, gi in zip(weights, theta, g):
                w.copy_(t + sign * eps * gi)
        diffs.append(grads())
    hg = [(a - b) / (2 * eps) for a, b in zip(*diffs)]
    expected = float(sum((-t * h).sum() for t, h in zip(theta, hg)))
    assert value == pytest.approx(expected, rel=1e-5)
    assert abs(value) > 0


def test_fisher_of_an_mlp_against_a_hand_written_backward_pass():
    net, (x, y) = mlp(), mlp_batch()
    ref = numpy_mlp(net, x, y)
    expected = sum(0.5 * ((a * g) ** 2).mean(0).sum() for a, g in [
        (ref["pre"], ref["dpre"]), (ref["z"], ref["dz"])
    ])  # fmt: skip
    assert score("fisher", net, [(x, y)], MLP_SHAPE, 3) == pytest.approx(expected, rel=1e-10)


def test_fisher_sums_activation_times_gradient_over_positions_per_channel():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 5))
    net = net.to(DT)
    x, y = images(5, seed=6, dtype=DT)
    a1 = F.conv2d(x, net[0].weight, net[0].bias, padding=1)
    a2 = F.linear(F.relu(a1).flatten(1), net[3].weight, net[3].bias)
    g1, g2 = torch.autograd.grad(F.cross_entropy(a2, y), (a1, a2))
    expected = (
        0.5 * ((a1 * g1).sum((2, 3)) ** 2).mean(0).sum() + 0.5 * ((a2 * g2) ** 2).mean(0).sum()
    )
    assert score("fisher", net, [(x, y)]) == pytest.approx(expected.item(), rel=1e-10)


# --- jacov, nwot ----------------------------------------------------------------------------------


def test_jacov_against_numpy_on_hand_computed_jacobians():
    net, (x, y) = mlp(), mlp_batch(n=5)
    ref = numpy_mlp(net, x, y)
    # d(Σ logits)/dx_n = W1ᵀ (mask_n ⊙ W2ᵀ 1): samples are independent without batch norm.
    J = ((ref["pre"] > 0) * ref["W2"].sum(0)) @ ref["W1"]
    v = np.linalg.eig(np.corrcoef(J))[0].real
    expected = -np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5))
    assert score("jacov", net, [(x, y)], MLP_SHAPE, 3) == pytest.approx(expected, rel=1e-8)
    with pytest.raises(ValueError, match="at least 2 samples"):
        score("jacov", net, [(x[:1], y[:1])], MLP_SHAPE, 3)


class Branchy(nn.Module):
    """Two rectifiers the logits depend on (an nn.ReLU and an nn.ReLU6) and one they do not."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 5), nn.Linear(5, 4)
        self.relu, self.relu6, self.side = nn.ReLU(inplace=True), nn.ReLU6(), nn.ReLU()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = self.relu(self.fc1(x.flatten(1)))
        self.side(x.flatten(1))  # computed, not used (like an auxiliary head)
        return self.head(self.relu6(self.fc2(h))), None


def test_nwot_is_the_logdet_of_the_hand_built_hamming_kernel():
    torch.manual_seed(3)
    net = Branchy().to(DT)
    x, y = mlp_batch(n=6, seed=4)
    with torch.no_grad():
        p1 = net.fc1(x.flatten(1))
        p2 = net.fc2(torch.relu(p1))
    codes = torch.cat([p1 > 0, p2 > 0], 1).numpy()
    K = np.array([[np.sum(a == b) for b in codes] for a in codes], dtype=float)
    expected = np.linalg.slogdet(K)[1]
    assert score("nwot", net, [(x, y)], MLP_SHAPE, 3) == pytest.approx(expected, rel=1e-12)
    # Two identical samples: K is singular.
    twice = torch.cat([x[:3], x[:1]])
    assert score("nwot", net, [(twice, y[:4])], MLP_SHAPE, 3) == -math.inf


# --- zen ------------------------------------------------------------------------------------------


class SideNorm(nn.Module):
    """conv 1x1 - BN - ReLU - functional global pooling - linear, and optionally a batch norm
    its feature map does not depend on (like an auxiliary head's)."""

    def __init__(self, side: bool):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.side = nn.BatchNorm2d(3) if side else None
        self.relu = nn.ReLU()
        self.classifier = nn.Linear(4, 5)

    def forward(self, x):
        if self.side is not None:
            self.side(x * 5)
        h = self.relu(self.bn(self.conv(x)))
        return self.classifier(h.mean((2, 3))), None


@pytest.mark.parametrize("functional_pooling", [False, True])
def test_zen_against_a_reimplementation_of_the_official_steps(functional_pooling):
    """With nn.AdaptiveAvgPool2d the map is its input (the BN output); with functional pooling
    the last 4-d module output before the classifier (the ReLU's: SideNorm)."""
    if functional_pooling:
        net = SideNorm(side=False)
    else:
        net = nn.Sequential(
            nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(4, 5),
        )  # fmt: skip
    shape, batch = (3, 4, 4), 64
    g = torch.Generator().manual_seed(7)
    W = torch.randn(4, 3, 1, 1, generator=g)  # the draws, in module order, then x and ε
    torch.randn(5, 4, generator=g)
    x = torch.randn(batch, *shape, generator=g)
    eps = torch.randn(batch, *shape, generator=g)

    def f(inp):  # conv, train-mode BN (normalised by the biased variance), optional ReLU
        h = F.conv2d(inp.double(), W.double())
        mean, var = h.mean((0, 2, 3), keepdim=True), h.var((0, 2, 3), unbiased=False, keepdim=True)
        out = (h - mean) / torch.sqrt(var + 1e-5)
        return (torch.relu(out) if functional_pooling else out), h.var((0, 2, 3))

    (f1, v1), (f2, v2) = f(x), f(x + 0.01 * eps)
    delta = (f1 - f2).abs().sum((1, 2, 3)).mean()
    running_var = 0.9 * (0.9 * 1 + 0.1 * v1) + 0.1 * v2  # momentum 0.1 from 1, unbiased
    expected = math.log(delta) + 0.5 * math.log(running_var.mean())
    assert score("zen", net, shape=shape, seed=7) == pytest.approx(expected, rel=1e-4)
    assert score("zen", net, shape=shape, seed=8) != pytest.approx(expected, rel=1e-4)


def test_zen_counts_only_the_batch_norms_its_feature_map_depends_on():
    """SideNorm's extra BN draws nothing (no weights), so the two nets see the same numbers."""
    assert score("zen", SideNorm(True)) == pytest.approx(score("zen", SideNorm(False)), rel=1e-12)


def test_zen_refuses_a_network_without_a_feature_map_before_pooling():
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    with pytest.raises(ValueError, match="feature map before global average pooling"):
        score("zen", net, shape=MLP_SHAPE)


# --- zico, meco -----------------------------------------------------------------------------------


def numpy_zico(per_batch: list[dict[str, np.ndarray]]) -> float:
    total = 0.0
    for key in ("dW1", "dW2"):
        G = np.stack([r[key].ravel() for r in per_batch])
        std, mean_abs = G.std(0), np.abs(G).mean(0)
        nz = std != 0
        total += np.log(np.sum(mean_abs[nz] / std[nz]))
    return total


def test_zico_against_numpy_on_per_batch_gradients():
    net = mlp()
    batches = [mlp_batch(n=4, seed=s) for s in (1, 2, 3)]
    expected = numpy_zico([numpy_mlp(net, x, y) for x, y in batches])
    assert score("zico", net, batches, MLP_SHAPE, 3) == pytest.approx(expected, rel=1e-10)
    # One batch is split into its two halves.
    x, y = mlp_batch(n=7, seed=5)
    halves = [(x[:3], y[:3]), (x[3:], y[3:])]
    expected = numpy_zico([numpy_mlp(net, a, b) for a, b in halves])
    assert score("zico", net, [(x, y)], MLP_SHAPE, 3) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="at least two batches"):
        score("zico", net, [(x[:1], y[:1])], MLP_SHAPE, 3)


def numpy_min_eig(feature_map: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        corr = np.corrcoef(feature_map.reshape(feature_map.shape[0], -1))
    corr[~np.isfinite(corr)] = 0
    return float(np.min(np.linalg.eig(corr)[0].real))


def test_meco_sums_the_min_eigenvalues_of_the_first_samples_channel_correlations():
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
    ).to(DT)  # fmt: skip
    x, y = images(3, seed=8, dtype=DT)
    with torch.no_grad():
        a = net[0](x[:1])
        maps = [a, torch.relu(a), net[2](torch.relu(a))]  # pooled 1x1 map: λ_min 0
    expected = sum(numpy_min_eig(m[0].numpy()) for m in maps)
    value = score("meco", net, [(x, y), images(3, seed=9, dtype=DT)])
    assert value == pytest.approx(expected, rel=1e-10)
    # Only the first sample of the first batch is read (no batch norm here).
    other = torch.cat([x[:1], torch.randn_like(x[1:])])
    assert score("meco", net, [(other, y)]) == pytest.approx(value, rel=1e-12)
    # A container's output counts once more (their hook on every module).
    nested = nn.Sequential(nn.Sequential(net[0], net[1]), *list(net)[2:])
    again = score("meco", nested, [(x, y)])
    assert again == pytest.approx(value + numpy_min_eig(maps[1][0].numpy()), rel=1e-10)
