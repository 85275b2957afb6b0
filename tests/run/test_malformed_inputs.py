"""Property-based: malformed genotype and alphas files always give the clear error.

Hypothesis throws random JSON values and random mutations of valid files at the loaders. Every
outcome must be either the loader's own error (a ValueError subclass naming the problem) or, when
a mutation happens to stay valid, an object that validates and round-trips: never another
exception, never a silently wrong result.
"""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.core.arch import AlphasFileError, ArchParams, load_alphas
from nas.core.genotype import Genotype, GenotypeError, load_genotype, zoo
from supernet.spaces.darts import DartsSpace

SPACE = DartsSpace(input_shape=(3, 8, 8), num_classes=10, C=4, layers=3)
VALID_GENOTYPE = zoo()["darts_v2"].to_dict()
VALID_ALPHAS = ArchParams(SPACE).to_json()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 20) | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["none", "sep_conv_3x3", "skip_connect", "darts", "normal", "", "x"]),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)  # fmt: skip


def paths(obj, prefix=()):
    """Every (path, value) inside a JSON object."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, (*prefix, i))


@st.composite
def mutations(draw, valid):
    """A valid object with one node replaced, deleted or given an extra key."""
    obj = copy.deepcopy(valid)
    all_paths = [p for p, _ in paths(obj) if p]
    path = draw(st.sampled_from(all_paths))
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "delete", "extra"]))
    if action == "replace":
        parent[path[-1]] = draw(json_values)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=6))] = draw(json_values)
    else:
        parent.append(draw(json_values))
    return obj


def write(tmp_path_factory, data, raw: bytes | None = None):
    path = tmp_path_factory.mktemp("f") / "file.json"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps(data))
    return path


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(data=st.one_of(json_values, mutations(VALID_GENOTYPE)))
def test_genotype_loader_rejects_malformed_files_clearly(tmp_path_factory, data):
    path = write(tmp_path_factory, data)
    try:
        genotype = load_genotype(path)
    except GenotypeError as err:
        assert str(err) and len(str(err)) < 2000
        return
    # Still valid after the mutation: it must round-trip exactly and mean what the file says.
    assert Genotype.from_dict(genotype.to_dict()) == genotype
    assert Genotype.from_text(str(genotype)) == genotype
    assert [list(p) for p in genotype.normal] == data["normal"]


@SETTINGS
@given(data=st.one_of(json_values, mutations(VALID_ALPHAS)))
def test_alphas_loader_rejects_malformed_files_clearly(tmp_path_factory, data):
    path = write(tmp_path_factory, data)
    try:
        alphas = load_alphas(path, SPACE)
    except AlphasFileError as err:
        assert str(err) and len(str(err)) < 3000
        return
    assert sorted(alphas) == ["normal", "reduce"]
    for cell, tensor in alphas.items():
        assert tensor.shape == SPACE.alpha_shape
        assert tensor.tolist() == data["alphas"][cell]


@SETTINGS
@given(raw=st.binary(max_size=64))
def test_non_json_bytes_are_rejected_clearly(tmp_path_factory, raw):
    path = write(tmp_path_factory, None, raw=raw)
    for load, error in (
        (load_genotype, GenotypeError),
        (lambda p: load_alphas(p, SPACE), AlphasFileError),
    ):
        try:
            load(path)
        except error:
            continue
        raise AssertionError(f"{raw!r} was accepted")
