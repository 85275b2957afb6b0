"""Tests of nas/core/genotype.py: the validated genotype, its text and JSON forms, and the zoo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nas.core.genotype import (
    Genotype,
    GenotypeError,
    canonical,
    load_genotype,
    resolve_genotype,
    save_genotype,
    zoo,
)
from supernet.ops import OPS

KEYS = {"space", "normal", "normal_concat", "reduce", "reduce_concat"}
ZOO_NAMES = ("darts_v1", "darts_v2")


def _valid_dict() -> dict[str, Any]:
    return zoo()["darts_v2"].to_dict()


def test_zoo_has_published_darts_genotypes() -> None:
    table = zoo()
    for name in ZOO_NAMES:
        assert name in table
        g = table[name]
        assert isinstance(g, Genotype)
        assert g.space == "darts"
        assert g.steps == 4
        assert len(g.normal) == len(g.reduce) == 8
        assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
    v2 = table["darts_v2"]
    assert v2.normal[:2] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1))
    assert v2.reduce[:2] == (("max_pool_3x3", 0), ("max_pool_3x3", 1))
    assert table["darts_v1"] != v2


def test_published_darts_v2_text_parses() -> None:
    # As printed in the DARTS repository (genotypes.py, DARTS_V2).
    text = (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
        "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
        "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
        "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
        "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
    )
    g = Genotype.from_text(text)
    assert g == zoo()["darts_v2"]
    assert str(g) == text
    assert canonical(g) == text
    # range(2, 6) as the DARTS repository writes it is not a literal; a list is required.
    with pytest.raises(GenotypeError, match="Cannot parse"):
        Genotype.from_text(text.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)"))


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_text_round_trip(name: str) -> None:
    g = zoo()[name]
    assert Genotype.from_text(str(g)) == g
    assert Genotype.from_text("  " + str(g) + "\n") == g


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_json_round_trip(name: str, tmp_path: Path) -> None:
    g = zoo()[name]
    path = tmp_path / "sub" / "genotype.json"
    save_genotype(g, path)
    loaded = load_genotype(path)
    assert loaded == g
    assert hash(loaded) == hash(g)
    assert json.loads(path.read_text()) == g.to_dict()
    assert Genotype.from_dict(g.to_dict()) == g


def test_to_dict_has_exactly_the_documented_keys() -> None:
    d = zoo()["darts_v2"].to_dict()
    assert set(d) == KEYS
    assert d["space"] == "darts"
    assert d["normal"][0] == ["sep_conv_3x3", 0]
    assert d["normal_concat"] == [2, 3, 4, 5]
    json.dumps(d)  # plain JSON types only


def test_lists_are_normalised_to_tuples() -> None:
    g = Genotype(
        normal=[["skip_connect", 0], ["sep_conv_3x3", 1]],
        normal_concat=[2],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)],
        reduce_concat=(2,),
    )
    assert g.normal == (("skip_connect", 0), ("sep_conv_3x3", 1))
    assert g.normal_concat == (2,)
    assert g.steps == 1
    assert g.cell("reduce") == ((("max_pool_3x3", 0), ("max_pool_3x3", 1)), (2,))
    with pytest.raises(AttributeError):
        g.space = "other"  # type: ignore[misc]


def test_from_dict_without_space_defaults_to_darts() -> None:
    d = _valid_dict()
    del d["space"]
    assert Genotype.from_dict(d).space == "darts"


@pytest.mark.parametrize("spec", ["darts_v2", "DARTS_V2", "darts_v1"])
def test_resolve_by_name(spec: str) -> None:
    assert resolve_genotype(spec) == zoo()[spec.lower()]


def test_resolve_by_path(tmp_path: Path) -> None:
    g = zoo()["darts_v1"]
    path = tmp_path / "genotype.json"
    save_genotype(g, path)
    assert resolve_genotype(path) == g
    assert resolve_genotype(str(path)) == g
    # An existing file need not end in .json.
    other = tmp_path / "genotype.txt"
    other.write_text(path.read_text())
    assert resolve_genotype(other) == g


def test_resolve_unknown_name_lists_zoo() -> None:
    with pytest.raises(GenotypeError) as info:
        resolve_genotype("darts_v3")
    msg = str(info.value)
    assert "darts_v3" in msg
    for name in ZOO_NAMES:
        assert name in msg


def test_resolve_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        resolve_genotype("/nonexistent/nowhere.json")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_genotype(tmp_path / "missing.json")


def test_load_non_json_file_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    path.write_text("Genotype(normal=[...]")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_genotype(path)


def test_load_non_json_file_raises_genotype_error(tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    path.write_text("not json {")
    with pytest.raises(GenotypeError):
        load_genotype(path)


def _with(**changes: Any) -> dict[str, Any]:
    d = _valid_dict()
    d.update(changes)
    return d


def _normal_with(k: int, pair: Any) -> dict[str, Any]:
    d = _valid_dict()
    d["normal"][k] = pair
    return d


_MALFORMED = {
    "unknown_op": (_normal_with(0, ["sep_conv_9x9", 0]), r"unknown op 'sep_conv_9x9'"),
    "input_eq_node": (
        _normal_with(1, ["skip_connect", 2]),
        r"feeds node 2, whose valid inputs are 0\.\.1",
    ),
    "input_gt_node": (
        _normal_with(7, ["skip_connect", 5]),
        r"feeds node 5, whose valid inputs are 0\.\.4",
    ),
    "negative_input": (_normal_with(0, ["skip_connect", -1]), r"valid inputs"),
    "odd_pairs": (
        _with(normal=_valid_dict()["normal"][:7]),
        r"two \(op, input\) pairs per .*7 pairs",
    ),
    "no_pairs": (_with(reduce=[]), r"reduce: .*got 0 pairs"),
    "concat_out_of_range": (
        _with(normal_concat=[2, 3, 4, 6]),
        r"normal_concat \[2, 3, 4, 6\].*0\.\.5",
    ),
    "concat_duplicate": (_with(normal_concat=[2, 2]), r"distinct"),
    "concat_empty": (_with(reduce_concat=[]), r"reduce_concat"),
    "concat_string": (_with(normal_concat="2345"), r"normal_concat must be a list"),
    "concat_float": (_with(normal_concat=[2.0, 3]), r"normal_concat must be a list"),
    "concat_bool": (_with(normal_concat=[True]), r"normal_concat must be a list"),
    "pair_too_short": (_normal_with(0, ["skip_connect"]), r"\[op_name, input_node\] pair"),
    "pair_too_long": (_normal_with(0, ["skip_connect", 0, 1]), r"\[op_name, input_node\] pair"),
    "pair_swapped": (_normal_with(0, [0, "skip_connect"]), r"\[op_name, input_node\] pair"),
    "input_float": (_normal_with(0, ["skip_connect", 0.0]), r"\[op_name, input_node\] pair"),
    "input_bool": (_normal_with(0, ["skip_connect", False]), r"\[op_name, input_node\] pair"),
    "pair_string": (_normal_with(0, "skip_connect"), r"\[op_name, input_node\] pair"),
    "pairs_string": (_with(normal="skip_connect"), r"\[op_name, input_node\] pair"),
    "not_object_list": ([1, 2], r"expected a JSON object"),
    "not_object_str": ("Genotype", r"expected a JSON object"),
}


@pytest.mark.parametrize("data,pattern", list(_MALFORMED.values()), ids=list(_MALFORMED))
def test_malformed_genotype_rejected(data: Any, pattern: str) -> None:
    with pytest.raises(GenotypeError, match=pattern):
        Genotype.from_dict(data, source="test genotype")
    with pytest.raises(ValueError):  # GenotypeError is a ValueError
        Genotype.from_dict(data)


def test_unknown_op_message_lists_valid_ops() -> None:
    with pytest.raises(GenotypeError) as info:
        Genotype.from_dict(_normal_with(3, ["conv_9x9", 1]))
    msg = str(info.value)
    assert "conv_9x9" in msg
    for name in OPS:
        assert name in msg


def test_error_names_its_source(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_with(normal_concat=[9])))
    with pytest.raises(GenotypeError, match=r"genotype file .*bad\.json.*normal_concat"):
        load_genotype(path)


@pytest.mark.parametrize(
    "drop,add,pattern",
    [
        (["reduce_concat"], {}, r"missing keys \['reduce_concat'\]"),
        (["normal", "reduce"], {}, r"missing keys \['normal', 'reduce'\]"),
        ([], {"steps": 4}, r"unknown keys \['steps'\]"),
    ],
)
def test_missing_or_extra_keys(drop: list[str], add: dict[str, Any], pattern: str) -> None:
    d = _valid_dict()
    for k in drop:
        del d[k]
    d.update(add)
    with pytest.raises(GenotypeError, match=pattern) as info:
        Genotype.from_dict(d)
    for key in KEYS:
        assert key in str(info.value)


@pytest.mark.parametrize("value", [None, 5])
def test_non_list_pairs_rejected(value: Any) -> None:
    with pytest.raises(GenotypeError, match="normal"):
        Genotype.from_dict(_with(normal=value))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not python (",
        "Genotype",
        "Other(normal=[], normal_concat=[], reduce=[], reduce_concat=[])",
        "Genotype(normal=foo, normal_concat=[2], reduce=[], reduce_concat=[2])",
    ],
)
def test_from_text_rejects_unparsable(text: str) -> None:
    with pytest.raises(GenotypeError, match="Cannot parse genotype text"):
        Genotype.from_text(text)


def test_from_text_validates_content() -> None:
    text = str(zoo()["darts_v2"]).replace("'dil_conv_3x3', 2", "'dil_conv_3x3', 9")
    with pytest.raises(GenotypeError, match=r"genotype text: normal: .*valid inputs"):
        Genotype.from_text(text)
    with pytest.raises(GenotypeError, match="missing keys"):
        Genotype.from_text("Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)])")
