"""One tiny training run with every backend that writes files (jsonl, tensorboard, wandb offline),
shared by the backend tests and the end-of-run report test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qlorafx.recipe.load import load_recipe
from tests.train.tiny import tiny_recipe

OVERRIDES = ["logging.backends=[jsonl, tensorboard, wandb]", "logging.sample_max_new_tokens=0",
             "logging.wandb={project: qlorafx-tests, run_name: tiny-tracked, tags: [test, tiny], mode: offline}"]


@pytest.fixture(scope="session")  # one training run for every test that reads one
def tracked(tmp_path_factory):
    """(loaded recipe, run dir, wandb dir, metrics.jsonl records); wandb offline, no network."""
    tmp = tmp_path_factory.mktemp("tracked")
    wandb_dir = tmp / "wandb-dir"
    wandb_dir.mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_DIR", str(wandb_dir))
        env.setenv("WANDB_CONFIG_DIR", str(tmp / "wandb-config"))
        env.setenv("WANDB_CACHE_DIR", str(tmp / "wandb-cache"))
        env.delenv("WANDB_API_KEY", raising=False)
        from qlorafx.finetune import train

        loaded = load_recipe(tiny_recipe(tmp), OVERRIDES)
        train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    run_dir = Path(loaded.recipe.output_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return loaded, run_dir, wandb_dir, records
