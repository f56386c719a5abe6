"""Arguments shared by the commands that take a recipe."""

from __future__ import annotations

import argparse


def count(least: int):
    """An argparse type: a whole number of at least ``least`` (argparse's own int takes -1 as well)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected {least} or more, got {value}")
        return value

    parse.__name__ = "count"  # what argparse names in its message
    return parse


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="the recipe YAML file")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="override recipe values")


def add_run_dir_arguments(parser: argparse.ArgumentParser, what: str = "") -> None:
    """train's flags for an output_dir that holds a run (validate takes them too, to check as train would)."""
    suffix = f" ({what})" if what else ""
    parser.add_argument("--overwrite", action="store_true", help=f"replace a run already in output_dir{suffix}")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                        help=f"continue the run in output_dir from its newest checkpoint, or from CHECKPOINT{suffix}")
    parser.add_argument("--force", action="store_true", help="with --resume: accept recipe changes since the checkpoint")


def load(args):
    from qlorafx.recipe.load import load_recipe

    return load_recipe(args.recipe, args.overrides)
