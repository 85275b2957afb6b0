"""The weight-entangled ``MultiheadAttention``: against the plain ``Attention`` of each choice
(and against torch's own attention), mixing, the heads-divide-width rule, its MACs."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.hardware.profile import module_macs
from supernet.choices import (
    Attention,
    ChoiceError,
    MultiheadAttention,
    ValueChoice,
    discover,
    fix_model,
)


class Holder(nn.Module):
    def __init__(self, embed, heads, head_dim=None):
        super().__init__()
        self.attn = MultiheadAttention(embed, heads, head_dim)

    def forward(self, x):
        return self.attn(x)


def one_hot(decisions, cols):
    for d, k in zip(decisions, cols, strict=True):
        d.weights = torch.eye(len(d.choices))[k]


@pytest.mark.parametrize("head_dim", [None, 3])
def test_each_choice_equals_the_plain_attention_of_its_size(head_dim):
    torch.manual_seed(0)
    model = Holder(ValueChoice([8, 12], label="e"), ValueChoice([1, 2, 4], label="h"), head_dim)
    decisions = discover(model)
    x = torch.randn(3, 5, 12)
    for cols in itertools.product(range(2), range(3)):
        one_hot(decisions, cols)
        y = model(x)
        e = (8, 12)[cols[0]]
        plain = fix_model(copy.deepcopy(model), dict(zip(("e", "h"), cols, strict=True)))
        assert isinstance(plain.attn, Attention)
        torch.testing.assert_close(y[..., :e], plain(x[..., :e]), atol=1e-5, rtol=0)
        assert torch.all(y[..., e:] == 0)


def test_the_plain_attention_is_multihead_attention():
    """The fixed form is standard multi-head attention: torch's, with the same weights."""
    torch.manual_seed(0)
    ours = Attention(8, 2, 4)
    ref = nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.k.weight, ours.v.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.k.bias, ours.v.bias]))
        ref.out_proj.weight.copy_(ours.out.weight)
        ref.out_proj.bias.copy_(ours.out.bias)
    x = torch.randn(2, 6, 8)
    torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-6, rtol=0)


def test_mixing_sums_the_weighted_outputs_of_the_joint_choices():
    torch.manual_seed(0)
    model = Holder(ValueChoice([8, 12], label="e"), ValueChoice([2, 4], label="h"))
    decisions = discover(model)
    w = [torch.softmax(torch.randn(2), 0), torch.softmax(torch.randn(2), 0)]
    for d, wd in zip(decisions, w, strict=True):
        d.weights = wd
    x = torch.randn(2, 4, 12)
    expected = 0
    for ce, ch in itertools.product(range(2), range(2)):
        e = (8, 12)[ce]
        plain = fix_model(copy.deepcopy(model), {"e": ce, "h": ch})
        expected = expected + w[0][ce] * w[1][ch] * F.pad(plain(x[..., :e]), (0, 12 - e))
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)


def test_heads_that_do_not_divide_the_width_are_refused():
    with pytest.raises(ChoiceError, match="does not divide embed_dim"):
        MultiheadAttention(ValueChoice([8, 12], label="e"), ValueChoice([3, 4], label="h"))
    MultiheadAttention(ValueChoice([8, 12], label="e"), ValueChoice([3, 4], label="h"), head_dim=2)


def test_attention_macs_count_the_quadratic_term():
    T, E, heads, d = 5, 8, 2, 3
    macs = sum(module_macs(Attention(E, heads, d), (T, E)).values())
    projections = 3 * T * E * heads * d + T * heads * d * E
    assert macs == projections + 2 * T * T * heads * d
