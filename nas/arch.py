"""Architecture parameters α: one ``[edges, ops]`` tensor per cell type, kept outside the supernet.

``alphas.json`` stores the raw α with the op names and the edge list, so the file explains itself:
``{"space": ..., "ops": [...], "edges": [[input, node], ...], "alphas": {"normal": [[...], ...]}}``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.io import atomic_write_json, read_json
from supernet.spaces.base import SearchSpace


class AlphasFileError(ValueError):
    """A malformed alphas file, or one that does not match the search space."""


class ArchParams(nn.Module):
    """α per cell type, initialised as ``init_std * randn`` (DARTS uses 1e-3)."""

    def __init__(
        self, space: SearchSpace, init_std: float = 1e-3, generator: torch.Generator | None = None
    ):
        super().__init__()
        self.space_name = space.name
        self.ops = tuple(space.ops)
        self.edges = tuple(tuple(e) for e in space.edges)
        self.alphas = nn.ParameterDict(
            {
                cell: nn.Parameter(init_std * torch.randn(space.alpha_shape, generator=generator))
                for cell in space.cell_types
            }
        )

    @property
    def cell_types(self) -> tuple[str, ...]:
        return tuple(self.alphas.keys())

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.alphas.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "space": self.space_name,
            "ops": list(self.ops),
            "edges": [list(e) for e in self.edges],
            "alphas": {cell: a.detach().cpu().double().tolist() for cell, a in self.alphas.items()},
        }

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json())

    def load_values(self, alphas: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for cell, value in alphas.items():
                self.alphas[cell].copy_(value)


def parse_alphas(data: Any, space: SearchSpace, source: str = "alphas") -> dict[str, torch.Tensor]:
    """Validates an alphas.json object against ``space`` and returns α per cell type (float64)."""

    def fail(msg: str) -> AlphasFileError:
        return AlphasFileError(
            f"{source}: {msg} An alphas file for space {space.name!r} has the keys "
            f"'space', 'ops' (the {len(space.ops)} op names {list(space.ops)}), 'edges' (the "
            f"{len(space.edges)} [input, node] pairs) and 'alphas' ({list(space.cell_types)}, "
            f"each {len(space.edges)} rows of {len(space.ops)} finite numbers)."
        )

    if not isinstance(data, dict):
        raise fail(f"expected a JSON object, got {type(data).__name__}.")
    missing = [k for k in ("space", "ops", "edges", "alphas") if k not in data]
    if missing:
        raise fail(f"missing keys {missing}.")
    if data["space"] != space.name:
        raise fail(f"it is for space {data['space']!r}, not {space.name!r}.")
    if list(data["ops"]) != list(space.ops):
        raise fail(f"its op list {data['ops']} differs from the space's.")
    if [list(e) for e in data["edges"]] != [list(e) for e in space.edges]:
        raise fail(f"its edge list {data['edges']} differs from the space's.")
    alphas = data["alphas"]
    if not isinstance(alphas, dict) or sorted(alphas) != sorted(space.cell_types):
        raise fail(f"'alphas' must hold exactly the cell types {list(space.cell_types)}.")
    out = {}
    for cell in space.cell_types:
        rows = alphas[cell]
        ok = (
            isinstance(rows, list)
            and len(rows) == len(space.edges)
            and all(isinstance(r, list) and len(r) == len(space.ops) for r in rows)
            and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for r in rows
                for v in r
            )
        )
        if not ok:
            raise fail(
                f"alphas[{cell!r}] is not a {len(space.edges)}x{len(space.ops)} matrix of finite numbers."
            )
        out[cell] = torch.tensor(rows, dtype=torch.float64)
    return out


def load_alphas(path: str | Path, space: SearchSpace) -> dict[str, torch.Tensor]:
    """Reads and validates an ``alphas.json``."""
    try:
        data = read_json(path, what="alphas file")
    except FileNotFoundError:
        raise
    except ValueError as err:
        raise AlphasFileError(str(err)) from None
    return parse_alphas(data, space, source=f"alphas file {path}")
