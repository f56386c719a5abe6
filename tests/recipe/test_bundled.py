"""Every recipe under recipes/ and every config fragment under configs/ validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from qlorafx.data.build import check_datasets
from qlorafx.recipe.errors import RecipeError
from qlorafx.recipe.load import load_recipe
from tests.recipe.conftest import MINIMAL

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p for pattern in ("*.yaml", "*.yml") for p in (ROOT / "recipes").rglob(pattern))
FRAGMENTS = sorted(p for pattern in ("*.yaml", "*.yml") for p in (ROOT / "configs").rglob(pattern))

# A complete recipe a fragment is laid over; every key a fragment sets replaces the base's.
BASE = MINIMAL


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_recipes_are_found():
    assert (ROOT / "recipes" / "quickstart.yaml") in RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=_id)
def test_bundled_recipe_validates(path):
    loaded = load_recipe(path)
    assert check_datasets(loaded.recipe, loaded.sources) == []  # its data files exist and fit their format
    assert loaded.recipe.description, "a bundled recipe says what it is for (shown by `qlorafx recipes`)"


def test_config_fragments_validate_on_top_of_a_base(tmp_path):
    """Fragments are partial; each is laid over a minimal complete recipe. None yet is fine."""
    (tmp_path / "base.yaml").write_text(BASE)
    failures = []
    for path in FRAGMENTS:
        recipe = tmp_path / f"{path.stem}-recipe.yaml"
        recipe.write_text(f"extends:\n  - base.yaml\n  - {path}\n")
        try:
            load_recipe(recipe)
        except RecipeError as err:
            failures.append(f"{_id(path)}:\n{err.report()}")
    assert not failures, "\n".join(failures)
