"""Every paper recipe (``conf/experiment/*.yaml``) against its provenance table.

The tables (``experiments/<paper>/README.md``, format in ``experiments/provenance.py``) give
each hyperparameter's value and source; composing the recipe must give exactly those values,
so a change to a shared base config that moves a recipe fails here, naming the row.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from experiments.provenance import all_tables, read_tables, same
from tests.helpers.config import compose_recipe
from tests.helpers.paths import ROOT

# Not paper recipes: the default job, the test sizes, and the shared NB201 base (its values
# are checked through every nb201_* recipe's table).
NOT_RECIPES = {"quickstart", "smoke", "nb201_base"}
RECIPES = sorted(
    p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml") if p.stem not in NOT_RECIPES
)
TABLES = all_tables()
_MISSING = object()


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_has_a_provenance_table(name):
    assert name in TABLES, (
        f"conf/experiment/{name}.yaml has no provenance table: add a section "
        f"'### Provenance: `experiment={name}`' to its paper's experiments/<paper>/README.md."
    )
    checked = [r for r in TABLES[name] if r.key is not None]
    assert len(checked) >= 8, f"{name}: only {len(checked)} checked rows"


@pytest.mark.parametrize("name", sorted(TABLES))
def test_recipe_resolves_to_its_table(name):
    assert name in RECIPES, f"a provenance table names experiment={name}, which does not exist"
    cfg = compose_recipe(name)
    wrong = []
    for row in TABLES[name]:
        if row.key is None:
            continue
        found = OmegaConf.select(cfg, row.key, default=_MISSING)
        if found is _MISSING:
            wrong.append(f"{row.where}: {row.key} is not a key of the composed config")
            continue
        if OmegaConf.is_config(found):
            found = OmegaConf.to_container(found)
        if not same(found, row.value):
            wrong.append(
                f"{row.where}: {row.key} is {found!r}, the table says {row.value!r} "
                f"({row.name}; source: {row.source})"
            )
    assert not wrong, "\n".join(wrong)


def test_the_parser_reads_keys_values_and_fact_rows(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# X\n\n### Provenance: `experiment=x`\n\n"
        "| hyperparameter | key | value | source |\n|---|---|---|---|\n"
        "| epochs | `trainer.max_epochs` | `50` | train_search.py |\n"
        "| K | `strategy.modifiers[0].ks` | `[6, 4]` | model_search.py |\n"
        "| BN | — | none after pools | operations.py |\n\n## Next\n| a | b | c | d |\n"
    )
    rows = read_tables(readme)["x"]
    assert [(r.key, r.value) for r in rows] == [
        ("trainer.max_epochs", 50),
        ("strategy.modifiers[0].ks", [6, 4]),
        (None, "none after pools"),
    ]
    assert same(0.025, 0.025000000000000001) and not same(0.025, 0.1) and not same(1, True)
