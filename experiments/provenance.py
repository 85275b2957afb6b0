"""Provenance tables: every hyperparameter of a paper recipe, its value and its source.

Each ``experiments/<paper>/README.md`` holds, per recipe, a section headed
``### Provenance: `experiment=<name>` `` followed by a markdown table

    | hyperparameter | key | value | source |
    |---|---|---|---|
    | search epochs | `trainer.max_epochs` | `50` | quark0/darts cnn/train_search.py: `--epochs 50` |

``key`` is a dotted path into the composed config (``strategy.modifiers[0].ks`` for list
items) and ``value`` a YAML literal; a row whose key is ``—`` documents a fact with no config
key (it is read, not checked). ``tests/recipes/test_recipes.py`` composes every recipe and compares its
resolved values with these rows, so a change to a shared base config that moves a recipe fails
loudly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HEADING = re.compile(r"^#+\s*Provenance:\s*`experiment=([\w\-]+)`\s*$")
NO_KEY = "—"


@dataclass(frozen=True)
class Row:
    experiment: str
    name: str
    key: str | None  # None: a documented fact with no config key
    value: object
    source: str
    where: str  # file:line, for error messages


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _literal(cell: str) -> str:
    return cell[1:-1] if cell.startswith("`") and cell.endswith("`") and len(cell) > 1 else cell


def read_tables(readme: Path) -> dict[str, list[Row]]:
    """The provenance rows of one README, by experiment name."""
    tables: dict[str, list[Row]] = {}
    current: str | None = None
    lines = readme.read_text().splitlines()
    for i, line in enumerate(lines, 1):
        m = HEADING.match(line)
        if m:
            current = m.group(1)
            if current in tables:
                raise ValueError(f"{readme}:{i}: a second provenance table for {current!r}.")
            tables[current] = []
            continue
        if current is None:
            continue
        if line.startswith("#"):
            current = None
            continue
        if not line.startswith("|"):
            continue
        cells = _cells(line)
        if cells[0] == "hyperparameter" or set(cells[0]) <= {"-", ":"}:
            continue
        if len(cells) != 4:
            raise ValueError(
                f"{readme}:{i}: a provenance row needs 4 cells (hyperparameter | key | value | "
                f"source), found {len(cells)}: {line!r}"
            )
        name, key, value, source = cells
        key = None if key == NO_KEY else _literal(key)
        parsed = yaml.safe_load(_literal(value)) if key is not None else value
        tables[current].append(Row(current, name, key, parsed, source, f"{readme}:{i}"))
    return tables


def all_tables(root: Path = ROOT) -> dict[str, list[Row]]:
    """Every provenance table under ``experiments/*/README.md``, by experiment name."""
    out: dict[str, list[Row]] = {}
    for readme in sorted((root / "experiments").glob("*/README.md")):
        for name, rows in read_tables(readme).items():
            if name in out:
                raise ValueError(f"Two provenance tables for experiment {name!r} ({readme}).")
            out[name] = rows
    return out


def same(found: object, expected: object) -> bool:
    """Config value ``found`` equals the table's ``expected`` (floats to 1e-9 relative)."""
    if isinstance(expected, bool) or isinstance(found, bool):
        return found is expected
    if isinstance(expected, (int, float)) and isinstance(found, (int, float)):
        return abs(found - expected) <= 1e-9 * max(abs(expected), abs(found), 1e-300)
    if isinstance(expected, list) and isinstance(found, (list, tuple)):
        return len(found) == len(expected) and all(map(same, found, expected))
    if isinstance(expected, dict) and isinstance(found, dict):
        return found.keys() == expected.keys() and all(
            same(found[k], expected[k]) for k in expected
        )
    return found == expected
