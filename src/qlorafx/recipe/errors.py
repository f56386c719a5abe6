"""One report for every problem in a recipe: where each is, what was expected, how to fix it."""

from __future__ import annotations

from dataclasses import dataclass

from qlorafx.errors import UserError


@dataclass(frozen=True)
class Problem:
    path: str  # dotted key path, '' for the whole file
    message: str
    source: str | None = None  # 'file:line', 'command line', or None when unknown

    def line(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"  {self.path or '<recipe>'}{where}: {self.message}"


class RecipeError(UserError):
    """Raised with all the problems found; the CLI prints ``report()`` and exits with code 2."""

    def __init__(self, recipe_path: str, problems: list[Problem]):
        self.recipe_path, self.problems = recipe_path, problems
        super().__init__(self.report())

    def report(self) -> str:
        count = len(self.problems)
        head = f"{self.recipe_path}: {count} problem{'s' if count != 1 else ''}:"
        return "\n".join([head, *(p.line() for p in self.problems)])
