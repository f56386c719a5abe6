"""Relative paths: data files against the file that named them, overrides and output_dir against the cwd."""

from __future__ import annotations

import pytest

from qlorafx.recipe.load import load_recipe

RECIPE = """
    model:
      loader: from_config
      config: {model_type: llama}
    data:
      datasets:
        - path: data/train.jsonl
    output_dir: runs/x
"""


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    return here


def test_data_paths_are_relative_to_the_recipe_folder(write, tmp_path, cwd):
    path = write("project/recipe.yaml", RECIPE)
    recipe = load_recipe(path).recipe
    assert recipe.data.datasets[0].path == str(tmp_path / "project" / "data" / "train.jsonl")


def test_a_relative_recipe_path_still_resolves_against_its_folder(write, tmp_path, cwd):
    write("project/recipe.yaml", RECIPE)
    recipe = load_recipe("../project/recipe.yaml").recipe
    assert recipe.data.datasets[0].path == str(tmp_path / "project" / "data" / "train.jsonl")


def test_output_dir_is_relative_to_the_cwd(write, tmp_path, cwd):
    path = write("project/recipe.yaml", RECIPE)
    assert load_recipe(path).recipe.output_dir == str(cwd / "runs" / "x")


def test_data_paths_from_a_parent_are_relative_to_the_parent(write, tmp_path, cwd):
    write("shared/base.yaml", RECIPE)
    child = write("project/deep/child.yaml", """
        extends: ../../shared/base.yaml
        lora: {r: 4}
    """)
    assert load_recipe(child).recipe.data.datasets[0].path == str(tmp_path / "shared" / "data" / "train.jsonl")


def test_data_paths_a_child_replaces_are_relative_to_the_child(write, tmp_path, cwd):
    write("shared/base.yaml", RECIPE)
    child = write("project/child.yaml", """
        extends: ../shared/base.yaml
        data:
          datasets:
            - path: mine.jsonl
            - path: ../shared/data/train.jsonl
    """)
    paths = [d.path for d in load_recipe(child).recipe.data.datasets]
    assert paths == [str(tmp_path / "project" / "mine.jsonl"), str(tmp_path / "shared" / "data" / "train.jsonl")]


def test_override_paths_are_relative_to_the_cwd(write, tmp_path, cwd):
    path = write("project/recipe.yaml", RECIPE)
    recipe = load_recipe(path, ["data.datasets.0.path=mine.jsonl", "output_dir=elsewhere"]).recipe
    assert recipe.data.datasets[0].path == str(cwd / "mine.jsonl")
    assert recipe.output_dir == str(cwd / "elsewhere")


def test_override_of_another_key_keeps_the_file_relative_path(write, tmp_path, cwd):
    path = write("project/recipe.yaml", RECIPE)
    recipe = load_recipe(path, ["data.datasets.0.format=alpaca"]).recipe
    assert recipe.data.datasets[0].path == str(tmp_path / "project" / "data" / "train.jsonl")


def test_absolute_paths_are_left_alone(write, tmp_path, cwd):
    target = tmp_path / "abs" / "train.jsonl"
    path = write("project/recipe.yaml", RECIPE.replace("data/train.jsonl", str(target)))
    assert load_recipe(path).recipe.data.datasets[0].path == str(target)


def test_home_is_expanded(write, tmp_path, cwd, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write("project/recipe.yaml", RECIPE.replace("data/train.jsonl", "~/train.jsonl"))
    assert load_recipe(path).recipe.data.datasets[0].path == str(tmp_path / "home" / "train.jsonl")


def test_local_model_folder_resolves_but_a_hub_id_stays(write, tmp_path, cwd):
    (tmp_path / "project" / "models" / "tiny").mkdir(parents=True)
    text = """
        model:
          path: {path}
          tokenizer: {tokenizer}
        data:
          datasets: [{{path: a.jsonl}}]
        output_dir: out
    """
    local = write("project/local.yaml", text.format(path="models/tiny", tokenizer="models/tiny"))
    model = load_recipe(local).recipe.model
    assert model.path == model.tokenizer == str(tmp_path / "project" / "models" / "tiny")
    hub = write("project/hub.yaml", text.format(path="org/model", tokenizer="org/tokenizer"))
    model = load_recipe(hub).recipe.model
    assert (model.path, model.tokenizer) == ("org/model", "org/tokenizer")


def test_a_model_folder_given_on_the_command_line_resolves_against_the_cwd(write, tmp_path, cwd):
    (cwd / "my-model").mkdir()
    path = write("project/recipe.yaml", RECIPE)
    model = load_recipe(path, ["model.loader=pretrained", "model.path=my-model", "model.config={}"]).recipe.model
    assert model.path == str(cwd / "my-model")
