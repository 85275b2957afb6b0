"""Tests of nas/core/arch.py: α per cell type, its init and the self-describing alphas.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from nas.core.arch import AlphasFileError, ArchParams, load_alphas, parse_alphas
from supernet.spaces.darts import DARTS_OPS, DartsSpace


@pytest.fixture
def space() -> DartsSpace:
    return DartsSpace(input_shape=(3, 8, 8), num_classes=5, C=4, layers=3)


def _arch(space: DartsSpace, seed: int = 0, **kw: Any) -> ArchParams:
    return ArchParams(space, generator=torch.Generator().manual_seed(seed), **kw)


def test_shapes_per_cell_type(space: DartsSpace) -> None:
    torch.manual_seed(0)
    arch = ArchParams(space)
    assert arch.cell_types == ("normal", "reduce")
    for cell, a in arch.as_dict().items():
        assert a.shape == (14, 8), cell
        assert a.requires_grad
        assert isinstance(a, torch.nn.Parameter)
    assert sorted(n for n, _ in arch.named_parameters()) == ["alphas.normal", "alphas.reduce"]
    assert arch.ops == DARTS_OPS
    assert arch.edges == tuple(space.edges)


def test_init_std(space: DartsSpace) -> None:
    torch.manual_seed(0)
    values = torch.cat([a.detach().flatten() for a in _arch(space).as_dict().values()])
    assert 0.7e-3 < values.std().item() < 1.3e-3
    assert values.abs().max().item() < 6e-3
    big = torch.cat([a.detach().flatten() for a in _arch(space, init_std=0.5).as_dict().values()])
    assert 0.35 < big.std().item() < 0.65
    zero = _arch(space, init_std=0.0)
    assert all(torch.count_nonzero(a) == 0 for a in zero.as_dict().values())


def test_generator_seed_determines_alphas(space: DartsSpace) -> None:
    torch.manual_seed(0)
    a, b, c = _arch(space, 3), _arch(space, 3), _arch(space, 4)
    for cell in a.cell_types:
        assert torch.equal(a.alphas[cell], b.alphas[cell])
        assert not torch.equal(a.alphas[cell], c.alphas[cell])
    assert not torch.equal(a.alphas["normal"], a.alphas["reduce"])


def test_to_json_layout(space: DartsSpace) -> None:
    torch.manual_seed(0)
    arch = _arch(space)
    data = arch.to_json()
    assert list(data) == ["space", "ops", "edges", "alphas"]
    assert data["space"] == "darts"
    assert data["ops"] == list(DARTS_OPS)
    assert data["edges"] == [list(e) for e in space.edges]
    assert data["edges"][:3] == [[0, 2], [1, 2], [0, 3]]
    assert sorted(data["alphas"]) == ["normal", "reduce"]
    json.dumps(data)  # plain JSON types only
    for cell, rows in data["alphas"].items():
        assert len(rows) == len(space.edges)
        for e, row in enumerate(rows):
            assert row == arch.alphas[cell][e].detach().double().tolist()


def test_save_load_round_trip_is_exact(space: DartsSpace, tmp_path: Path) -> None:
    torch.manual_seed(0)
    arch = _arch(space, init_std=1.0)
    path = tmp_path / "run" / "alphas.json"
    arch.save(path)
    loaded = load_alphas(path, space)
    assert sorted(loaded) == ["normal", "reduce"]
    for cell, value in loaded.items():
        assert value.dtype == torch.float64
        assert torch.equal(value, arch.alphas[cell].detach().double())
    other = _arch(space, seed=7)
    other.load_values(loaded)
    for cell in arch.cell_types:
        assert torch.equal(other.alphas[cell], arch.alphas[cell])
    assert not list(tmp_path.joinpath("run").glob("*.tmp"))


def _valid(space: DartsSpace) -> dict[str, Any]:
    return _arch(space).to_json()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alphas.json"
    path.write_text(text)
    return path


def _mutations() -> dict[str, tuple[Any, str]]:
    """name -> (function of a valid dict returning a broken one, expected message pattern)."""

    def set_key(key: str, value: Any):
        def f(d: dict[str, Any]) -> dict[str, Any]:
            d[key] = value
            return d

        return f

    def drop(*keys: str):
        def f(d: dict[str, Any]) -> dict[str, Any]:
            for k in keys:
                del d[k]
            return d

        return f

    def alpha(fn):
        def f(d: dict[str, Any]) -> dict[str, Any]:
            fn(d["alphas"])
            return d

        return f

    def put(cell: str, e: int, o: int, value: Any):
        def f(alphas: dict[str, Any]) -> None:
            alphas[cell][e][o] = value

        return alpha(f)

    return {
        "wrong_space": (set_key("space", "nb201"), r"space 'nb201', not 'darts'"),
        "wrong_ops_order": (
            set_key("ops", list(reversed(DARTS_OPS))),
            r"op list is \['dil_conv_5x5'.*; expected \['none', 'max_pool_3x3'",
        ),
        "missing_op": (set_key("ops", list(DARTS_OPS[:-1])), r"op list is .*; expected \["),
        "wrong_edges": (
            set_key("edges", [[1, 2], [0, 2]] + [[0, 3]] * 12),
            r"edge list is \[\[1, 2\].*; expected the 14 edges \[\[0, 2\]",
        ),
        "too_few_edges": (
            lambda d: {**d, "edges": d["edges"][:13]},
            r"edge list is .*; expected the 14 edges",
        ),
        "missing_space": (drop("space"), r"missing keys \['space'\]"),
        "missing_alphas_and_ops": (drop("ops", "alphas"), r"missing keys \['ops', 'alphas'\]"),
        "missing_cell": (
            alpha(lambda a: a.pop("reduce")),
            r"cell types \['normal'\]; expected \['normal', 'reduce'\]",
        ),
        "extra_cell": (
            alpha(lambda a: a.update(extra=a["normal"])),
            r"\['extra', 'normal', 'reduce'\]; expected",
        ),
        "alphas_not_object": (
            set_key("alphas", [[0.0] * 8] * 14),
            r"'alphas' holds the cell types \[\[0.0",
        ),
        "too_few_rows": (
            alpha(lambda a: a["normal"].pop()),
            r"alphas\['normal'\] has 13 rows; expected 14",
        ),
        "short_row": (
            alpha(lambda a: a["reduce"][3].pop()),
            r"alphas\['reduce'\] row 3 has 7 values; expected 8",
        ),
        "transposed": (
            alpha(lambda a: a.update(normal=[list(r) for r in zip(*a["normal"])])),
            r"alphas\['normal'\] has 8 rows; expected 14",
        ),
        "flat": (
            alpha(lambda a: a.update(normal=sum(a["normal"], []))),
            r"alphas\['normal'\] has 112 rows; expected 14",
        ),
        "nan_string": (
            put("normal", 2, 3, "NaN"),
            r"row 2 value 3 is 'NaN'; expected a finite number",
        ),
        "null": (put("reduce", 0, 0, None), r"row 0 value 0 is None"),
        "nan": (put("normal", 13, 7, math.nan), r"row 13 value 7 is nan"),
        "inf": (put("normal", 5, 1, -math.inf), r"row 5 value 1 is -inf"),
        "bool": (put("normal", 5, 1, True), r"row 5 value 1 is True"),
        "number_string": (put("normal", 5, 1, "0.5"), r"row 5 value 1 is '0.5'"),
    }


_MUTATIONS = _mutations()


@pytest.mark.parametrize("mutate,pattern", list(_MUTATIONS.values()), ids=list(_MUTATIONS))
def test_invalid_alphas_rejected(
    mutate: Any, pattern: str, space: DartsSpace, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    data = mutate(_valid(space))
    with pytest.raises(AlphasFileError, match=pattern) as info:
        parse_alphas(data, space)
    # The message explains what a valid file looks like.
    assert "'space', 'ops'" in str(info.value)
    # The same through a file (json writes NaN/Infinity as bare literals, which it reads back).
    path = _write(tmp_path, json.dumps(data))
    with pytest.raises(AlphasFileError, match=pattern) as info:
        load_alphas(path, space)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("data", [[1, 2], "alphas", None, 3.0], ids=["list", "str", "null", "num"])
def test_not_an_object_rejected(data: Any, space: DartsSpace, tmp_path: Path) -> None:
    with pytest.raises(AlphasFileError, match="expected a JSON object"):
        parse_alphas(data, space)
    with pytest.raises(AlphasFileError, match="expected a JSON object"):
        load_alphas(_write(tmp_path, json.dumps(data)), space)


def test_alphas_error_is_value_error() -> None:
    assert issubclass(AlphasFileError, ValueError)


def test_integer_alphas_accepted(space: DartsSpace) -> None:
    data = _valid(space)
    data["alphas"]["normal"] = [[0] * 8 for _ in range(14)]
    out = parse_alphas(data, space)
    assert out["normal"].dtype == torch.float64
    assert torch.count_nonzero(out["normal"]) == 0


def test_edges_as_tuples_accepted(space: DartsSpace) -> None:
    data = _valid(space)
    data["edges"] = [tuple(e) for e in data["edges"]]
    parse_alphas(data, space)


def test_missing_file(space: DartsSpace, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_alphas(tmp_path / "nope.json", space)


def test_non_json_file(space: DartsSpace, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        load_alphas(_write(tmp_path, '{"space": "darts", '), space)


def test_load_from_other_space_shape(space: DartsSpace, tmp_path: Path) -> None:
    small = DartsSpace(input_shape=(3, 8, 8), num_classes=5, C=4, layers=3, steps=2, multiplier=2)
    torch.manual_seed(0)
    path = tmp_path / "alphas.json"
    _arch(small).save(path)
    assert load_alphas(path, small)["normal"].shape == (5, 8)
    with pytest.raises(AlphasFileError, match="edge list"):
        load_alphas(path, space)


def test_non_json_file_is_alphas_file_error(space: DartsSpace, tmp_path: Path) -> None:
    with pytest.raises(AlphasFileError):
        load_alphas(_write(tmp_path, "not json"), space)
