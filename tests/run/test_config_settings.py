"""The config is read once, in ``nas.run``: the rooms below take typed settings, every default
has one home (the schema), and every node that takes options refuses an unknown one."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from nas.data.config import DataConfig
from nas.retrain.export import ExportConfig
from nas.run.schema import Config, check_known_keys
from nas.run.settings import (
    data_settings,
    diagnostics_settings,
    export_settings,
    selection_settings,
)
from nas.search.hessian import DiagnosticsConfig
from nas.search.pt_selection import SelectionConfig
from tests.helpers.config import compose_cfg, options
from tests.helpers.paths import CONF, ROOT

# The rooms below nas.run: none of them reads Hydra's config.
BELOW_RUN = ("core", "data", "strategies", "search", "retrain", "hardware", "estimate")


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("room", BELOW_RUN)
def test_only_nas_run_reads_the_hydra_config(room):
    for path in sorted((ROOT / "nas" / room).rglob("*.py")):
        reads = {m for m in imported_modules(path) if m.split(".")[0] in ("omegaconf", "hydra")}
        assert not reads, f"{path.relative_to(ROOT)} imports {sorted(reads)}"
        assert "DictConfig" not in path.read_text(), f"{path.relative_to(ROOT)} names DictConfig"


def test_console_and_builders_import_no_circle():
    console = imported_modules(ROOT / "nas" / "run" / "console.py")
    assert "nas.run.builders" not in console and "nas.run" not in console


def test_settings_are_the_rooms_dataclasses_resolved(monkeypatch):
    monkeypatch.setenv("NAS_DATA_ROOT", "/datasets")
    cfg = compose_cfg(["data=cifar10", "export.latency_repeats=3", "selection=pt"])
    data = data_settings(cfg)
    assert isinstance(data, DataConfig) and data.root == "/datasets/cifar10"  # interpolated
    assert data.input_shape == [3, 32, 32] and data.num_classes == 10
    export = export_settings(cfg)
    assert isinstance(export, ExportConfig) and export.latency_repeats == 3
    assert isinstance(diagnostics_settings(cfg), DiagnosticsConfig)
    selection = selection_settings(cfg)
    assert isinstance(selection, SelectionConfig) and selection.name == "pt"


def test_a_mandatory_value_left_unset_names_its_key():
    cfg = compose_cfg([])
    cfg.data.num_classes = "???"
    with pytest.raises(ValueError, match=r"data\.num_classes is mandatory but was not set"):
        data_settings(cfg)


def schema_defaults(schema: type) -> dict:
    out = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def test_root_yaml_states_only_differences_from_the_schema():
    """A key of ``conf/config.yaml`` at its schema default would be a second home of that
    default (and, merged after the experiment, would silently undo an experiment's value)."""
    own = yaml.safe_load((CONF / "config.yaml").read_text())
    defaults = OmegaConf.to_container(OmegaConf.structured(Config))
    repeated = [
        f"{key}={value!r}"
        for key, value in own.items()
        if key not in ("defaults", "hydra") and defaults.get(key) == value
    ]
    assert not repeated, f"conf/config.yaml repeats the schema's defaults: {repeated}"


def dict_nodes(node, key: str = ""):
    """The full key of every dict node of a composed config (Hydra's own node aside)."""
    if isinstance(node, DictConfig):
        if key:
            yield key
        for child in node:
            if (key or child != "hydra") and not OmegaConf.is_missing(node, child):
                yield from dict_nodes(node._get_node(child), f"{key}.{child}" if key else child)
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from dict_nodes(node._get_node(i), f"{key}[{i}]")


def node_at(cfg: DictConfig, key: str):
    parts = key.replace("]", "").replace("[", ".").split(".")
    node = cfg
    for part in parts:
        node = node[int(part)] if part.isdigit() else node[part]
    return node


# Every strategy's components (samplers, arch-gradient modes, regularizers, modifiers,
# selectors, optimizers, depth stages), every space, DARTS-PT's selection and every recipe.
CHOICES = [
    *[f"strategy={o}" for o in options("strategy")],
    *[f"search_space={o}" for o in options("search_space")],
    *[f"retrain={o}" for o in options("retrain")],
    "selection=pt",
]


@pytest.mark.parametrize("choice", CHOICES)
def test_every_node_refuses_an_unknown_key_naming_the_valid_ones(choice):
    cfg = compose_cfg([choice])
    nodes = list(dict_nodes(cfg))
    assert {"data", "trainer", "export", "diagnostics", "strategy.sampler"} <= set(nodes)
    for key in nodes:
        bad = cfg.copy()
        node = node_at(bad, key)
        if node._is_none():
            continue
        with open_dict(node):
            node["zzz_unknown"] = 1
        with pytest.raises(ValueError, match=re.escape(f"{key}.zzz_unknown=1")) as err:
            check_known_keys(bad)
        valid = [k for k in node if k not in ("zzz_unknown", "_target_", "_partial_")][:1]
        assert all(k in str(err.value).split("takes", 1)[1] for k in valid), str(err.value)
