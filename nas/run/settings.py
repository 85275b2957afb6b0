"""The composed config as typed settings: where ``nas.run`` hands a config node to a room below.

Below ``nas.run`` nothing reads Hydra's ``DictConfig``. A room that takes options owns the
dataclass of its settings (``nas.data.config.DataConfig``, ``nas.retrain.export.ExportConfig``,
``nas.search.hessian.DiagnosticsConfig``, ``nas.search.pt_selection.SelectionConfig``,
``nas.hardware.constraint.ConstraintConfig``); the schema (``nas.run.schema``) registers those
dataclasses in Hydra's ConfigStore, so the composed node is typed by them and
``OmegaConf.to_object`` gives the dataclass back, every interpolation resolved. The builders
and stages convert a node here, once per object they build.
"""

from __future__ import annotations

from typing import TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from nas.data.config import DataConfig
from nas.hardware.constraint import ConstraintConfig
from nas.retrain.export import ExportConfig
from nas.search.hessian import DiagnosticsConfig
from nas.search.pt_selection import SelectionConfig

T = TypeVar("T")


def typed(cfg: DictConfig, key: str, kind: type[T]) -> T:
    """The node ``cfg.<key>`` as its dataclass ``kind``; a mandatory value left unset (``???``)
    fails naming its full key. An untyped node (a run's saved ``.hydra/config.yaml``, loaded
    with ``OmegaConf.load``) is checked against ``kind`` first, as composing would have."""
    node = cfg[key]
    if OmegaConf.get_type(node) is not kind:
        node = OmegaConf.merge(
            OmegaConf.structured(kind), OmegaConf.to_container(node, resolve=True)
        )
    try:
        return OmegaConf.to_object(node)
    except MissingMandatoryValue as err:
        raise ValueError(
            f"{key}.{err.key} is mandatory but was not set (???): give it in the group's YAML "
            f"or on the command line ({key}.{err.key}=...)."
        ) from None


def data_settings(cfg: DictConfig) -> DataConfig:
    return typed(cfg, "data", DataConfig)


def export_settings(cfg: DictConfig) -> ExportConfig:
    return typed(cfg, "export", ExportConfig)


def diagnostics_settings(cfg: DictConfig) -> DiagnosticsConfig:
    return typed(cfg, "diagnostics", DiagnosticsConfig)


def selection_settings(cfg: DictConfig) -> SelectionConfig:
    return typed(cfg, "selection", SelectionConfig)


def constraint_settings(cfg: DictConfig) -> ConstraintConfig:
    return typed(cfg, "constraint", ConstraintConfig)


def child_size(cfg: DictConfig) -> tuple[int, int]:
    """The child network's (C, layers): the retrain recipe's, or, where it leaves them null
    (``retrain=nb201``), the search space's (NAS-Bench-201 trains the benchmark's own C=16,
    N=5 network, the one it searches)."""
    r, ss = cfg.retrain, cfg.search_space
    return (ss.C if r.C is None else r.C), (ss.layers if r.layers is None else r.layers)
