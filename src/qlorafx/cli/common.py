"""Arguments shared by the commands that take a recipe."""

from __future__ import annotations

import argparse


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="the recipe YAML file")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="override recipe values")


def load(args):
    from qlorafx.recipe.load import load_recipe

    return load_recipe(args.recipe, args.overrides)
