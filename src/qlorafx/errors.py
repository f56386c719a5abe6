"""Leaf types every layer shares: the error a user's input can cause, and one problem found in it."""

from __future__ import annotations

from dataclasses import dataclass


class UserError(Exception):
    """Bad input (recipe, data, run directory): a message with what, where, and how to fix it; the CLI
    prints it and exits with code 2."""


@dataclass(frozen=True)
class Problem:
    """One problem in a recipe (or in what it names), filed under its key; RecipeError reports them all."""

    path: str  # dotted key path, '' for the whole file
    message: str
    source: str | None = None  # 'file:line', 'command line', or None when unknown

    def line(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"  {self.path or '<recipe>'}{where}: {self.message}"


def shown(value) -> str:
    """A value as the user would write it in YAML (true, null, [a, b], {k: v}), not as Python prints it."""
    import yaml

    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"  # YAML's single quotes: visible when empty, backslashes as written
    if isinstance(value, (set, frozenset, tuple)):
        value = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip().removesuffix("\n...").strip()
