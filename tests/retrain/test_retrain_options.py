"""Retraining options of ProxylessNAS' recipe (``nas/retrain/module.py``): dropout on the classifier's
input in training only (``retrain.dropout``), BatchNorm without weight decay
(``retrain.no_decay_bn``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.retrain.module import classifier_dropout, decay_groups
from supernet.genotypes import MBCONV_OPS, MBConvGenotype
from supernet.spaces.mbconv import MBConvSpace


def child() -> nn.Module:
    space = MBConvSpace((3, 8, 8), 5, C=4, layers=2)
    n = len(space.plan["layers"])
    return space.build_child(MBConvGenotype([MBCONV_OPS[0]] * n))


def test_dropout_acts_on_the_classifier_input_in_training_only():
    torch.manual_seed(0)
    net, x = child(), torch.randn(8, 3, 8, 8)
    net.eval()
    plain = net(x)[0]
    features = []
    classifier_dropout(net, 0.5)
    # A hook registered after ours sees the dropped input.
    net.classifier.register_forward_pre_hook(lambda m, inp: features.append(inp[0]))
    net.eval()
    assert torch.equal(net(x)[0], plain)  # evaluation (and export): unchanged
    net.train()
    torch.manual_seed(1)
    logits = net(x)[0]
    dropped = features[-1]
    assert (dropped == 0).float().mean().item() == pytest.approx(0.5, abs=0.15)
    w, b = net.classifier.weight, net.classifier.bias
    assert torch.allclose(logits, torch.nn.functional.linear(dropped, w, b))
    with pytest.raises(ValueError, match="retrain.dropout=0.1 .* has none"):
        classifier_dropout(nn.Sequential(nn.Linear(2, 2)), 0.1)


def test_batchnorm_parameters_get_no_weight_decay():
    net = child()
    groups = decay_groups(net)
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    bn_params = {id(p) for m in bn for p in m.parameters()}
    assert {id(p) for p in groups[1]["params"]} == bn_params and bn_params
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(net.parameters()))
    # With zero gradients, SGD's weight decay shrinks only the first group's parameters.
    opt = torch.optim.SGD(groups, lr=0.1, weight_decay=0.5)
    before = [p.detach().clone() for p in net.parameters()]
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p, b in zip(net.parameters(), before):
        same = torch.equal(p.detach(), b)
        assert same == (id(p) in bn_params or not b.any()), p.shape
