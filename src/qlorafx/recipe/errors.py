"""One report for every problem in a recipe: where each is, what was expected, how to fix it."""

from __future__ import annotations

from qlorafx.errors import Problem, UserError


class RecipeError(UserError):
    """Raised with all the problems found; the CLI prints ``report()`` and exits with code 2."""

    def __init__(self, recipe_path: str, problems: list[Problem]):
        self.recipe_path, self.problems = recipe_path, problems
        super().__init__(self.report())

    def report(self) -> str:
        count = len(self.problems)
        head = f"{self.recipe_path}: {count} problem{'s' if count != 1 else ''}:"
        return "\n".join([head, *(p.line() for p in self.problems)])
