"""qlorafx show RECIPE [overrides]: the resolved recipe as YAML (extends merged, overrides applied, defaults filled)."""

from qlorafx.cli.common import add_recipe_arguments, load


def add_parser(commands) -> None:
    parser = commands.add_parser("show", help="print the resolved recipe as YAML")
    add_recipe_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    print(load(args).to_yaml(), end="")
    return 0
