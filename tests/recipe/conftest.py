"""Fixtures for recipe tests: write small YAML files into tmp_path and load them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from qlorafx.recipe.errors import RecipeError
from qlorafx.recipe.load import load_recipe

# A valid recipe in as few lines as possible (line numbers below are relied on by tests).
MINIMAL = """\
model:
  loader: from_config
  config:
    model_type: llama
data:
  datasets:
    - path: train.jsonl
output_dir: out
"""


@pytest.fixture
def write(tmp_path: Path):
    """write(name, text) -> path: dedented text, leading newline dropped, so line 1 is the first line."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def minimal(write) -> Path:
    return write("recipe.yaml", MINIMAL)


@pytest.fixture
def problems():
    """problems(path, overrides) -> {dotted path: (message, source)} from the one RecipeError raised."""

    def problems(path: Path, overrides: list[str] = ()) -> dict[str, tuple[str, str | None]]:
        with pytest.raises(RecipeError) as info:
            load_recipe(path, list(overrides))
        found = {p.path: (p.message, p.source) for p in info.value.problems}
        assert len(found) == len(info.value.problems), "one problem per key"
        return found

    return problems
