"""The model configs qlorafx ships so that the bundled recipes estimate with no hub: one for every
bundled recipe's model, with the published parameter counts, and a local folder still wins."""

from __future__ import annotations

import json

import pytest

from qlorafx.estimate.configs import model_config, shipped_path
from qlorafx.recipe.load import load_recipe
from tests.conftest import REPO

RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))
QUICKSTART = REPO / "recipes" / "quickstart.yaml"
# Parameter counts as the model cards (and the QLoRA paper, for LLaMA) give them, in billions
PUBLISHED = {"huggyllama/llama-7b": 6.74, "huggyllama/llama-13b": 13.02, "huggyllama/llama-30b": 32.53,
             "huggyllama/llama-65b": 65.29, "meta-llama/Llama-3.1-8B": 8.03, "mistralai/Mistral-7B-v0.3": 7.25,
             "Qwen/Qwen2.5-7B": 7.62}


def test_every_bundled_recipe_has_its_models_config():
    hub_models = {load_recipe(path).recipe.model.path for path in RECIPES}
    hub_models.discard(None)  # from_config recipes carry their config
    missing = [m for m in sorted(hub_models) if shipped_path(m) is None]
    assert not missing, f"no configs/architectures/<id>.json for {missing}"
    assert set(PUBLISHED) <= hub_models


@pytest.mark.parametrize("model_id", sorted(PUBLISHED))
def test_shipped_configs_build_the_published_model_size(model_id):
    from qlorafx.model.loaders import skeleton

    recipe = load_recipe(QUICKSTART, ["model.loader=pretrained", f"model.path={model_id}", "model.config={}"]).recipe
    config, source = model_config(recipe)
    assert source == f"qlorafx's copy of {model_id}'s config.json"
    parameters = sum(p.numel() for p in skeleton(config).parameters())
    assert parameters / 1e9 == pytest.approx(PUBLISHED[model_id], abs=0.005)


def test_a_local_folder_wins_over_the_shipped_copy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "huggyllama" / "llama-7b"
    folder.mkdir(parents=True)
    fields = json.loads(shipped_path("huggyllama/llama-7b").read_text()) | {"num_hidden_layers": 3}
    (folder / "config.json").write_text(json.dumps(fields))
    recipe = load_recipe(QUICKSTART, ["model.loader=pretrained", "model.path=huggyllama/llama-7b", "model.config={}"]).recipe
    config, source = model_config(recipe)
    assert config.num_hidden_layers == 3 and "copy" not in source


@pytest.mark.parametrize("model_id", ["../configs/x", "huggyllama/llama-7b.json", "no-such-org/no-such-model"])
def test_only_shipped_hub_ids_are_looked_up(model_id):
    assert shipped_path(model_id) is None
