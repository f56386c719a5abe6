"""qlorafx validate RECIPE [overrides]: every check short of loading weights, without importing torch."""

from qlorafx.cli.common import add_recipe_arguments, load
from qlorafx.recipe.errors import RecipeError


def add_parser(commands) -> None:
    parser = commands.add_parser("validate", help="check a recipe and its data files without loading weights")
    add_recipe_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from qlorafx.data.build import check_datasets
    from qlorafx.train.backends import backend_problems

    loaded = load(args)
    problems = check_datasets(loaded.recipe, loaded.sources) + backend_problems(loaded.recipe, loaded.sources)
    if problems:
        raise RecipeError(args.recipe, problems)
    recipe = loaded.recipe
    names = ", ".join(f"{d.format}:{d.path}" for d in recipe.data.datasets)
    print(f"ok: {args.recipe}: {recipe.quantization.bits}-bit {recipe.model.path or recipe.model.config.get('model_type')}, "
          f"LoRA r={recipe.lora.r}, data {names}")
    return 0
