"""docs/reference.md is generated from the schema; it must be current, and it must cover every key."""

from __future__ import annotations

import typing

from pydantic import BaseModel

from qlorafx.recipe.reference import COMMAND, reference_markdown
from qlorafx.recipe.schema import Recipe
from tests.conftest import REPO

REFERENCE = REPO / "docs" / "reference.md"


def test_docs_reference_is_current():
    assert REFERENCE.read_text(encoding="utf-8") == reference_markdown(), (
        f"docs/reference.md is stale: regenerate it with `{COMMAND}`")


def models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold: through list[...], unions and Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def every_field(model: type[BaseModel], path: str = "") -> list[tuple[str, str, str | None]]:
    found = []
    for name, field in model.model_fields.items():
        found.append((f"{path}.{name}" if path else name, name, field.description))
        for inner in models_in(field.annotation):
            found += every_field(inner, f"{path}.{name}" if path else name)
    return found


def test_every_key_and_description_is_in_the_reference():
    text = reference_markdown()
    fields = every_field(Recipe)
    assert len(fields) > 40
    for dotted, name, description in fields:
        assert f"| `{name}` |" in text, dotted
        if description:
            assert description.replace("|", "\\|") in text, dotted


def test_sections_have_their_own_tables():
    text = reference_markdown()
    for heading in ("## Top level", "## `model`", "## `lora`", "## `data`", "## `data.datasets[]` with `format: alpaca`",
                    "## `logging`", "## `logging.wandb`"):
        assert f"\n{heading}\n" in text
    assert "| `backends` | list of `console` \\| `jsonl` \\| `tensorboard` \\| `wandb` |" in text
    assert "| `output_dir` | string | **required** |" in text
