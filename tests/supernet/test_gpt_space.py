"""The GPT supernet (``search_space=gpt``): GPT-2's parameter counts, extraction exact at the
one-hot choice (GQA groups, rotary / learned / no positions), the attention against a plain
reference, rotary's relative-position property, genotypes and refusals, cost tables."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nas.hardware.costs import space_cost_model
from nas.hardware.profile import count_macs, count_params
from supernet.choices import ChoiceError, has_choices
from supernet.choices.attention import rotary
from supernet.choices.language import CausalSelfAttention
from supernet.genotypes import Genotype, GenotypeError
from supernet.spaces import build_space

SMALL = dict(C=8, layers=2, n_query_groups=[1, 2, 4], pos_encoding=["learned", "rope", "none"])


def small_space():
    return build_space("gpt", [12], 64, **SMALL)


@pytest.mark.parametrize(
    "name, embed, layers, heads, mlp, params",
    [
        ("gpt2", 768, 12, 12, 3072, 124_439_808),
        ("gpt2-medium", 1024, 24, 16, 4096, 354_823_168),
    ],
)
def test_gpt2_has_its_published_parameter_count(name, embed, layers, heads, mlp, params):
    """Tied embeddings, learned positions, biases, 50257 tokens, 1024 positions. Built on the
    meta device: shapes without memory or initialisation (the counts are the shapes')."""
    with torch.device("meta"):
        space = build_space(
            "gpt", [1024], 50257, n_embd=[embed], n_layer=[layers], n_head=[heads],
            intermediate_size=[mlp], head_size=embed // heads,
        )  # fmt: skip
        assert count_params(space.build_child(space.reference_genotype())) == params


@pytest.mark.parametrize("train", [False, True])
def test_the_extracted_child_equals_the_supernet_at_the_one_hot_choice(train):
    space = small_space()
    torch.manual_seed(0)
    supernet = space.build_supernet().train(train)
    x = torch.randint(0, 64, (3, 12))
    generator = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(10):
        genotype = space.random_genotype(generator)
        seen.add(genotype.pos_encoding)
        one_hot = torch.zeros(space.alpha_shape)
        for row, col in enumerate(genotype.columns()):
            one_hot[row, col] = 1.0
        child = space.child_from_supernet(supernet, genotype).train(train)
        assert not has_choices(child)
        with torch.no_grad():
            expected = supernet(x, {"decisions": one_hot})
            got = child(x)[0]
        assert (got - expected).abs().max() <= 1e-5, str(genotype)
    assert len(seen) >= 2  # several position encodings were exercised


def test_causal_attention_matches_a_plain_reference():
    """Grouped-query attention = each head attending with its group's keys and values, causally."""
    torch.manual_seed(0)
    heads, groups, hs, e, t = 4, 2, 3, 8, 5
    attn = CausalSelfAttention(e, heads, groups, hs, bias=True, rope=False)
    x = torch.randn(2, t, e)
    q = attn.q(x).reshape(2, t, heads, hs)
    k = attn.k(x).reshape(2, t, groups, hs)
    v = attn.v(x).reshape(2, t, groups, hs)
    mask = torch.ones(t, t).tril().bool()
    outs = []
    for h in range(heads):
        g = h // (heads // groups)
        scores = q[:, :, h] @ k[:, :, g].transpose(1, 2) / hs**0.5
        outs.append(scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v[:, :, g])
    expected = attn.out(torch.stack(outs, 2).reshape(2, t, heads * hs))
    torch.testing.assert_close(attn(x), expected, atol=1e-6, rtol=0)
    # Causal: the first token's output does not depend on later tokens.
    y = x.clone()
    y[:, 1:] = torch.randn_like(y[:, 1:])
    torch.testing.assert_close(attn(y)[:, 0], attn(x)[:, 0])


def test_rotary_scores_depend_on_the_offset_only():
    torch.manual_seed(0)
    d, t = 8, 6
    q, k = torch.randn(d), torch.randn(d)
    rq = rotary(q.expand(1, 1, t, d).contiguous())[0, 0]
    rk = rotary(k.expand(1, 1, t, d).contiguous())[0, 0]
    scores = rq @ rk.T
    for offset in range(-2, 3):
        diagonal = torch.diagonal(scores, offset)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), atol=1e-5, rtol=0)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(t))


def test_genotypes_round_trip_and_bad_ones_are_refused():
    space = small_space()
    genotype = space.random_genotype(torch.Generator().manual_seed(3))
    data = genotype.to_dict()
    assert set(data) >= {"n_embd", "n_layer", "n_head", "n_query_groups", "intermediate_size",
                         "pos_encoding"}  # fmt: skip
    assert space.resolve(Genotype.from_dict(data)) == genotype
    from nas.core.genotype import genotype_from_text

    assert space.resolve(genotype_from_text(str(genotype))) == genotype
    with pytest.raises(GenotypeError, match="needs"):
        Genotype.from_dict({**data, "n_head": data["n_head"][:-1] + [4, 4]})
    with pytest.raises(GenotypeError, match="has no choice 7"):
        space.resolve(Genotype.from_dict({**data, "n_embd": 7}))


def test_bad_definitions_are_refused():
    with pytest.raises(ChoiceError, match="does not divide num_heads"):
        build_space("gpt", [12], 64, C=8, layers=2, n_head=[4, 6], n_query_groups=[4])
    with pytest.raises(ValueError, match="pos_encoding"):
        build_space("gpt", [12], 64, C=8, layers=2, pos_encoding=["alibi"])
    with pytest.raises(ValueError, match="token ids"):
        build_space("gpt", [1, 8, 8], 10, C=8, layers=2)


def test_cost_tables_price_every_sampled_genotype_exactly():
    space = small_space()
    model = space_cost_model(space)
    generator = torch.Generator().manual_seed(0)
    for _ in range(15):
        genotype = space.random_genotype(generator)
        child = space.build_child(genotype)
        assert model.genotype_cost(space, genotype, "params") == count_params(child)
        macs = count_macs(child, [12], dtype=torch.long)
        assert model.genotype_cost(space, genotype, "macs") == macs


def test_the_tied_head_reads_the_token_table():
    space = build_space("gpt", [12], 64, C=8, layers=2)
    child = space.build_child(space.reference_genotype()).model
    ids = torch.randint(0, 64, (2, 12))
    h = child.norm(child.blocks(child.positions(child.tokens(ids))))
    torch.testing.assert_close(child(ids), F.linear(h, child.tokens.weight).flatten(0, 1))
