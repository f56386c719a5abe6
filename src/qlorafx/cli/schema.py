"""qlorafx schema: the recipe's JSON Schema, for editors' YAML support (see docs/editors.md)."""


def add_parser(commands) -> None:
    parser = commands.add_parser("schema", help="print the recipe's JSON Schema (for editor completion and checks)")
    parser.add_argument("--fragment", action="store_true",
                        help="no required keys: for config fragments that a recipe extends")
    parser.set_defaults(run=run)


def run(args) -> int:
    import json

    from qlorafx.recipe.json_schema import recipe_json_schema

    print(json.dumps(recipe_json_schema(fragment=args.fragment), indent=2))
    return 0
