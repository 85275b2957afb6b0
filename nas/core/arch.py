"""Architecture parameters α: one ``[edges, ops]`` tensor per cell type, kept outside the supernet.

``alphas.json`` stores the raw α with the op names and the edge list, so the file explains itself:
``{"space": ..., "ops": [...], "edges": [[input, node], ...], "alphas": {"normal": [[...], ...]}}``.
Strategies with edge normalization (PC-DARTS) add per-edge β: ``"betas": {"normal": [...], ...}``.

In the flat dict the strategies see (``ArchParams.as_dict()``), α is keyed by cell type and β by
``"beta/<cell type>"``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.core.io import atomic_write_json, read_json
from supernet.spaces.base import SearchSpace


class AlphasFileError(ValueError):
    """A malformed alphas file, or one that does not match the search space."""


BETA_PREFIX = "beta/"
MASK_PREFIX = "mask/"


def split_arch(
    arch: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(α per cell type, β per cell type) of a flat arch dict."""
    alphas = {k: v for k, v in arch.items() if "/" not in k}
    betas = {k[len(BETA_PREFIX) :]: v for k, v in arch.items() if k.startswith(BETA_PREFIX)}
    return alphas, betas


class ArchParams(nn.Module):
    """α per cell type, initialised as ``init_std * randn`` (DARTS uses 1e-3).

    With ``edge_betas``, also a per-edge β per cell type, initialised the same way (PC-DARTS).
    """

    def __init__(
        self,
        space: SearchSpace,
        init_std: float = 1e-3,
        generator: torch.Generator | None = None,
        edge_betas: bool = False,
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
        self.betas = nn.ParameterDict(
            {
                cell: nn.Parameter(init_std * torch.randn(len(space.edges), generator=generator))
                for cell in (space.cell_types if edge_betas else ())
            }
        )

        # Ops still in the search per cell type ([edges, ops] bools), once a progressive
        # modifier prunes (DrNAS); saved as "op_masks" so discretization sees the same ops. A
        # space whose rows have fewer choices than columns starts with its real columns.
        self.op_masks: dict[str, torch.Tensor] = space.column_masks() or {}

    @property
    def cell_types(self) -> tuple[str, ...]:
        return tuple(self.alphas.keys())

    def as_dict(self) -> dict[str, torch.Tensor]:
        """α by cell type, then β (if any) by ``beta/<cell type>``: the parameters themselves."""
        return {**self.alphas, **{BETA_PREFIX + c: b for c, b in self.betas.items()}}

    def to_json(self) -> dict[str, Any]:
        out = {
            "space": self.space_name,
            "ops": list(self.ops),
            "edges": [list(e) for e in self.edges],
            "alphas": {cell: a.detach().cpu().double().tolist() for cell, a in self.alphas.items()},
        }
        if len(self.betas):
            out["betas"] = {c: b.detach().cpu().double().tolist() for c, b in self.betas.items()}
        if self.op_masks:
            out["op_masks"] = {c: m.int().tolist() for c, m in self.op_masks.items()}
        return out

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json())

    def load_values(self, alphas: dict[str, torch.Tensor]) -> None:
        """Copies values in, keyed as ``as_dict()`` keys them."""
        params = self.as_dict()
        with torch.no_grad():
            for key, value in alphas.items():
                params[key].copy_(value)


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
    ops, edges = data["ops"], data["edges"]
    if not isinstance(ops, (list, tuple)) or list(ops) != list(space.ops):
        raise fail(f"its op list is {_found(ops)}; expected {list(space.ops)}.")
    if not (
        isinstance(edges, (list, tuple))
        and all(isinstance(e, (list, tuple)) for e in edges)
        and [list(e) for e in edges] == [list(e) for e in space.edges]
    ):
        raise fail(
            f"its edge list is {_found(edges)}; expected the {len(space.edges)} edges "
            f"{[list(e) for e in space.edges]}."
        )
    alphas = data["alphas"]
    if not isinstance(alphas, dict) or sorted(alphas) != sorted(space.cell_types):
        found = sorted(alphas) if isinstance(alphas, dict) else _found(alphas)
        raise fail(f"'alphas' holds the cell types {found}; expected {list(space.cell_types)}.")
    out = {}
    shape = (len(space.edges), len(space.ops))
    for cell in space.cell_types:
        problem = _matrix_problem(alphas[cell], shape)
        if problem:
            raise fail(f"alphas[{cell!r}] {problem}.")
        out[cell] = torch.tensor(alphas[cell], dtype=torch.float64)
    betas = data.get("betas", {})
    if not isinstance(betas, dict) or not set(betas) <= set(space.cell_types):
        found = sorted(betas) if isinstance(betas, dict) else _found(betas)
        raise fail(
            f"'betas' holds {found}; expected a map from cell types {list(space.cell_types)} "
            "to per-edge lists."
        )
    for cell, row in betas.items():
        problem = _vector_problem(row, len(space.edges), "edge")
        if problem:
            raise fail(f"betas[{cell!r}] {problem}.")
        out[BETA_PREFIX + cell] = torch.tensor(row, dtype=torch.float64)
    masks = data.get("op_masks", {})
    if not isinstance(masks, dict) or not set(masks) <= set(space.cell_types):
        found = sorted(masks) if isinstance(masks, dict) else _found(masks)
        raise fail(
            f"'op_masks' holds {found}; expected a map from cell types "
            f"{list(space.cell_types)} to 0/1 matrices."
        )
    for cell, rows in masks.items():
        try:
            mask = torch.tensor(rows, dtype=torch.bool)
        except (TypeError, ValueError):
            raise fail(f"op_masks[{cell!r}] is not a 0/1 matrix: found {_found(rows)}.") from None
        if tuple(mask.shape) != space.alpha_shape:
            raise fail(
                f"op_masks[{cell!r}] is a {'x'.join(map(str, mask.shape)) or 'scalar'} matrix; "
                f"expected {len(space.edges)}x{len(space.ops)}."
            )
        out[MASK_PREFIX + cell] = mask
    return out


def _found(value: Any, limit: int = 120) -> str:
    """A short description of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({type(value).__name__})"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _vector_problem(row: Any, n: int, per: str) -> str | None:
    """What is wrong with ``row`` as a list of ``n`` finite numbers (None: nothing)."""
    if not isinstance(row, list):
        return f"is {_found(row)}; expected a list of {n} finite numbers"
    if len(row) != n:
        return f"has {len(row)} values; expected {n} (one per {per})"
    for j, v in enumerate(row):
        if not _is_number(v):
            return f"value {j} is {_found(v)}; expected a finite number"
    return None


def _matrix_problem(rows: Any, shape: tuple[int, int]) -> str | None:
    """What is wrong with ``rows`` as a ``shape`` matrix of finite numbers (None: nothing),
    naming what was found next to what was expected."""
    n, k = shape
    if not isinstance(rows, list):
        return f"is {_found(rows)}; expected a list of {n} rows of {k} finite numbers"
    if len(rows) != n:
        return f"has {len(rows)} rows; expected {n} (one per edge), each of {k} numbers"
    for i, row in enumerate(rows):
        problem = _vector_problem(row, k, "op")
        if problem:
            return f"row {i} {problem}"
    return None


def load_alphas(path: str | Path, space: SearchSpace) -> dict[str, torch.Tensor]:
    """Reads and validates an ``alphas.json``."""
    try:
        data = read_json(path, what="alphas file")
    except FileNotFoundError:
        raise
    except ValueError as err:
        raise AlphasFileError(str(err)) from None
    return parse_alphas(data, space, source=f"alphas file {path}")
