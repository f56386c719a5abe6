"""One tiny finished run (4-bit Llama, alpaca quickstart data, 8 steps), trained once per session
and shared by the generate and chat tests in tests/infer and tests/cli."""

from __future__ import annotations

from pathlib import Path

from qlorafx.recipe.load import load_recipe
from tests.train.tiny import tiny_recipe

OVERRIDES = ["training.max_steps=8", "logging.backends=[jsonl]", "logging.sample_max_new_tokens=8"]
_RUNS: dict[str, Path] = {}


def finished_run(tmp_path_factory) -> Path:
    """The run directory (trained on first use)."""
    if "run" not in _RUNS:
        from qlorafx.train.pipeline import train

        tmp = tmp_path_factory.mktemp("generate-run")
        loaded = load_recipe(tiny_recipe(tmp), OVERRIDES)
        train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
        _RUNS["run"] = Path(loaded.recipe.output_dir)
    return _RUNS["run"]
