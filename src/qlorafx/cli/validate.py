"""qlorafx validate RECIPE [overrides] [--overwrite | --resume [CKPT] [--force]]: every check short of
loading weights, without importing torch (qlorafx.preflight)."""

from qlorafx.cli.common import add_recipe_arguments, add_run_dir_arguments, load
from qlorafx.recipe.errors import RecipeError


def add_parser(commands) -> None:
    parser = commands.add_parser("validate", help="check a recipe, its model config and its data without loading weights")
    add_recipe_arguments(parser)
    add_run_dir_arguments(parser, "check output_dir as `train` with this flag would")
    # transformers' config classes run without torch; the program then never loads it (cli/main.py)
    parser.set_defaults(run=run, torch_free=True)


def run(args) -> int:
    from qlorafx.preflight import preflight

    loaded = load(args)
    found = preflight(loaded, overwrite=args.overwrite, resume=args.resume, force=args.force)
    if found.problems:
        raise RecipeError(args.recipe, found.problems)
    recipe = loaded.recipe
    names = ", ".join(f"{d.format}:{d.path}" for d in recipe.data.datasets)
    print(f"ok: {args.recipe}: {recipe.quantization.bits}-bit {recipe.model.path or recipe.model.config.get('model_type')}, "
          f"LoRA r={recipe.lora.r}, data {names}")
    for note in found.notes:
        print(f"  not checked: {note}")
    return 0
