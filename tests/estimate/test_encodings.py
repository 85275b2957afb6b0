"""Architecture encodings (nas/estimate/encodings.py): lengths, one-hot rows, path encodings
checked by hand on NB201 and DARTS cells, injectivity of onehot over the whole NB201 space."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nas.core.genotype import Genotype, GenotypeError, MBConvGenotype, NB201Genotype, zoo
from nas.estimate.encodings import ENCODINGS, encode, feature_names
from supernet.spaces import build_space

SHAPE = (3, 32, 32)
EXAMPLE = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
    "skip_connect~2|"
)


@pytest.fixture(scope="module")
def nb201():
    return build_space("nb201", SHAPE, 10)


@pytest.fixture(scope="module")
def darts():
    return build_space("darts", SHAPE, 10)


def nonzero_names(space, genotype, name):
    v = encode(space, [genotype], name)[0]
    names = feature_names(space, name)
    return {names[i] for i in np.flatnonzero(v)}


def test_nb201_onehot_has_one_op_per_edge(nb201):
    g = NB201Genotype.from_text(EXAMPLE)
    v = encode(nb201, [g], "onehot")
    assert v.shape == (1, 6 * 5) and v.dtype == np.float64
    rows = v.reshape(6, 5)
    np.testing.assert_array_equal(rows.sum(axis=1), np.ones(6))
    # Row e = edge (0,1), (0,2), (1,2), (0,3), (1,3), (2,3); columns: none, skip_connect,
    # nor_conv_1x1, nor_conv_3x3, avg_pool_3x3.
    assert rows.argmax(axis=1).tolist() == [3, 3, 4, 1, 3, 1]
    assert np.flatnonzero(v[0]).tolist() == [3, 8, 14, 16, 23, 26]
    assert len(feature_names(nb201, "onehot")) == 30
    assert feature_names(nb201, "onehot")[14] == "cell/edge(1,2)/avg_pool_3x3"


def test_onehot_is_injective_over_the_whole_nb201_space(nb201):
    ops = nb201.ops
    genotypes = [
        NB201Genotype(
            nodes=[[(c[0], 0)], [(c[1], 0), (c[2], 1)], [(c[3], 0), (c[4], 1), (c[5], 2)]]
        )
        for c in itertools.product(ops, repeat=6)
    ]
    X = encode(nb201, genotypes, "onehot")
    assert X.shape == (5**6, 30)
    assert (X.sum(axis=1) == 6).all()
    assert len(np.unique(X, axis=0)) == 5**6  # distinct genotypes, distinct vectors


def test_nb201_path_encoding_by_hand(nb201):
    g = NB201Genotype.from_text(EXAMPLE)
    v = encode(nb201, [g], "path")[0]
    # Path ops (none excluded): skip_connect=0, nor_conv_1x1=1, nor_conv_3x3=2, avg_pool_3x3=3;
    # K=4, lengths 1..3: 4 + 16 + 64 = 84 columns; a sequence (o1, ..., oL) is at
    # sum_{l<L} K^l + sum_p o_p K^(p-1).
    assert v.shape == (84,)
    # Paths 0→3: skip (0); 0→2→3: conv3, skip (4 + 2 + 0·4 = 6); 0→1→3: conv3, conv3
    # (4 + 2 + 2·4 = 14); 0→1→2→3: conv3, pool, skip (20 + 2 + 3·4 + 0·16 = 34).
    assert np.flatnonzero(v).tolist() == [0, 6, 14, 34]
    assert nonzero_names(nb201, g, "path") == {
        "cell/in0/skip_connect",
        "cell/in0/nor_conv_3x3>skip_connect",
        "cell/in0/nor_conv_3x3>nor_conv_3x3",
        "cell/in0/nor_conv_3x3>avg_pool_3x3>skip_connect",
    }


def test_nb201_path_encoding_cuts_paths_at_none(nb201):
    g = NB201Genotype.from_text("|none~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|avg_pool_3x3~2|")
    v = encode(nb201, [g], "path")[0]
    assert np.flatnonzero(v).tolist() == [4 + 1 + 3 * 4]  # only 0→2→3: conv1x1, pool
    empty = NB201Genotype(nodes=[[("none", i) for i in range(j)] for j in (1, 2, 3)])
    assert encode(nb201, [empty], "path").sum() == 0
    # A dead node's incoming op changes the onehot encoding, not the path encoding.
    dead = "|{}~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    a, b = (NB201Genotype.from_text(dead.format(op)) for op in ("nor_conv_1x1", "avg_pool_3x3"))
    np.testing.assert_array_equal(encode(nb201, [a], "path"), encode(nb201, [b], "path"))
    assert not np.array_equal(encode(nb201, [a], "onehot"), encode(nb201, [b], "onehot"))


def test_darts_encodings(darts):
    g = zoo()["darts_v2"]
    v = encode(darts, [g], "onehot")[0]
    assert v.shape == (2 * 14 * 8,)
    assert v.sum() == 16  # 8 kept edges per cell, normal and reduce
    names = feature_names(darts, "onehot")
    expected = {
        f"{cell}/edge({i},{j})/{op}" for cell, edges in g.kept_edges().items() for op, i, j in edges
    }
    assert {names[i] for i in np.flatnonzero(v)} == expected
    # Path: per cell type and input (0, 1), sequences of 1..4 of the 7 ops but none.
    assert encode(darts, [g], "path").shape == (1, 2 * 2 * (7 + 7**2 + 7**3 + 7**4))


def test_darts_path_encoding_by_hand():
    space = build_space("darts", SHAPE, 10, steps=2, multiplier=2)
    assert space.edges == ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    g = Genotype(
        normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0), ("dil_conv_3x3", 2)],
        normal_concat=[2, 3],
        reduce=[("avg_pool_3x3", 0), ("avg_pool_3x3", 1), ("skip_connect", 2), ("sep_conv_5x5", 1)],
        reduce_concat=[2, 3],
    )
    assert encode(space, [g], "path").shape == (1, 2 * 2 * (7 + 49))
    assert nonzero_names(space, g, "path") == {
        "normal/in0/sep_conv_3x3",  # 0→2, concatenated
        "normal/in0/sep_conv_3x3>dil_conv_3x3",  # 0→2→3
        "normal/in0/max_pool_3x3",  # 0→3
        "normal/in1/skip_connect",  # 1→2
        "normal/in1/skip_connect>dil_conv_3x3",  # 1→2→3
        "reduce/in0/avg_pool_3x3",
        "reduce/in0/avg_pool_3x3>skip_connect",
        "reduce/in1/avg_pool_3x3",
        "reduce/in1/avg_pool_3x3>skip_connect",
        "reduce/in1/sep_conv_5x5",
    }
    # Only node 3 concatenated: the paths ending at node 2 are no paths to the output.
    only_3 = Genotype(
        normal=g.normal, normal_concat=[3], reduce=g.reduce, reduce_concat=g.reduce_concat
    )
    assert {n for n in nonzero_names(space, only_3, "path") if n.startswith("normal")} == {
        "normal/in0/sep_conv_3x3>dil_conv_3x3",
        "normal/in0/max_pool_3x3",
        "normal/in1/skip_connect>dil_conv_3x3",
    }


def test_darts_fixed_reduction_cell_encodes_the_normal_cell_only():
    space = build_space("darts", SHAPE, 10, reduce_cell="gdas_frc")
    v = encode(space, [zoo()["gdas_frc"]], "onehot")
    assert v.shape == (1, 14 * 8) and v.sum() == 8


def test_mbconv_onehot_is_the_choice_per_layer_and_has_no_path_encoding():
    space = build_space("mbconv", SHAPE, 10)
    n = len(space.edges)
    choices = [space.allowed_ops(i)[(3 * i) % len(space.allowed_ops(i))] for i in range(n)]
    g = MBConvGenotype(layers=[space.ops[k] for k in choices])
    v = encode(space, [g], "onehot")
    assert v.shape == (1, n * 7)
    rows = v.reshape(n, 7)
    assert rows.sum(axis=1).tolist() == [1.0] * n
    assert rows.argmax(axis=1).tolist() == choices
    with pytest.raises(ValueError, match="not a cell space.*use the onehot encoding"):
        encode(space, [g], "path")


def test_encode_refuses_what_it_cannot_encode(nb201, darts):
    g = NB201Genotype.from_text(EXAMPLE)
    with pytest.raises(ValueError, match=r"encoding: unknown encoding 'adjacency'.*onehot, path"):
        encode(nb201, [g], "adjacency")
    assert sorted(ENCODINGS) == ["onehot", "path"]
    with pytest.raises(GenotypeError, match="space 'nb201', not 'darts'"):
        encode(darts, [g], "onehot")
    small = build_space("nb201", SHAPE, 10, ops=("none", "skip_connect", "nor_conv_3x3"))
    assert len(feature_names(small, "onehot")) == 6 * 3
    assert len(feature_names(small, "path")) == 2 + 4 + 8
    with pytest.raises(GenotypeError, match="carries 'avg_pool_3x3'.*not in"):
        encode(small, [g], "onehot")
    assert encode(nb201, [], "path").shape == (0, 84)
