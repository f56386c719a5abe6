"""load_recipe: extends, merging, and one RecipeError that says where every problem is."""

from __future__ import annotations

import pytest

from qlorafx.errors import Problem, UserError
from qlorafx.recipe.errors import RecipeError
from qlorafx.recipe.load import load_recipe

BASE = """
    model:
      loader: from_config
      config:
        model_type: llama
        hidden_size: 64
        num_hidden_layers: 2
    lora:
      r: 8
      alpha: 16
    data:
      datasets:
        - path: a.jsonl
        - path: b.jsonl
      max_length: 128
    optimizer:
      name: adamw
    output_dir: out
"""


@pytest.fixture
def base(write):
    return write("base.yaml", BASE)


def test_extends_single_path_deep_merges_and_later_wins(write, base):
    child = write("child.yaml", """
        extends: base.yaml
        model:
          config:
            hidden_size: 128
        lora:
          alpha: 64
    """)
    recipe = load_recipe(child).recipe
    assert recipe.model.config == {"model_type": "llama", "hidden_size": 128, "num_hidden_layers": 2}
    assert (recipe.lora.r, recipe.lora.alpha) == (8, 64)
    assert recipe.optimizer.name == "adamw" and recipe.data.max_length == 128


def test_extends_replaces_lists_whole(write, base, tmp_path):
    child = write("child.yaml", """
        extends: base.yaml
        data:
          datasets:
            - path: c.jsonl
    """)
    data = load_recipe(child).recipe.data
    assert [d.path for d in data.datasets] == [str(tmp_path / "c.jsonl")]
    assert data.max_length == 128  # the rest of the mapping is still merged


def test_extends_list_merges_in_order_later_wins(write, base):
    write("lora64.yaml", """
        lora:
          r: 64
          dropout: 0.1
    """)
    write("lora32.yaml", """
        lora:
          r: 32
    """)
    child = write("child.yaml", """
        extends: [base.yaml, lora64.yaml, lora32.yaml]
        lora:
          alpha: 1
    """)
    lora = load_recipe(child).recipe.lora
    assert (lora.r, lora.dropout, lora.alpha) == (32, 0.1, 1)


def test_extends_is_relative_to_the_file_and_nests(write, tmp_path, monkeypatch):
    write("shared/base.yaml", BASE)
    write("shared/fragments/big.yaml", """
        extends: ../base.yaml
        lora:
          r: 128
    """)
    child = write("runs/exp/child.yaml", """
        extends: ../../shared/fragments/big.yaml
        lora:
          alpha: 256
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(child).recipe
    assert (recipe.lora.r, recipe.lora.alpha) == (128, 256)
    assert recipe.data.datasets[0].path == str(tmp_path / "shared" / "a.jsonl")  # relative to base.yaml


def test_extends_cycle_between_two_files(write, problems, tmp_path):
    a = write("a.yaml", """
        extends: b.yaml
        description: a
    """)
    b = write("b.yaml", """
        description: b
        extends: a.yaml
    """)
    assert problems(a) == {
        "extends": (f"extends forms a cycle: {a} -> {b} -> {a}; remove one of these links", f"{b}:2"),
    }


def test_extends_self_is_a_cycle(write, problems):
    me = write("me.yaml", """
        extends: me.yaml
    """)
    assert problems(me) == {"extends": (f"extends forms a cycle: {me} -> {me}; remove one of these links", f"{me}:1")}


def test_extends_cycle_through_a_list_names_the_entry_line(write, base, problems):
    a = write("a.yaml", """
        extends:
          - base.yaml
          - b.yaml
    """)
    b = write("b.yaml", """
        extends: [a.yaml]
    """)
    assert problems(a) == {
        "extends": (f"extends forms a cycle: {a} -> {b} -> {a}; remove one of these links", f"{b}:1"),
    }


def test_diamond_extends_is_not_a_cycle(write, base):
    write("left.yaml", "extends: base.yaml\nlora: {r: 2}\n")
    write("right.yaml", "extends: base.yaml\nlora: {alpha: 3}\n")
    top = write("top.yaml", "extends: [left.yaml, right.yaml]\n")
    lora = load_recipe(top).recipe.lora
    assert (lora.r, lora.alpha) == (2, 3)  # base applies once, first: right.yaml does not bring back its r: 8


def test_missing_extends_file(write, problems, tmp_path):
    child = write("child.yaml", """
        description: x
        extends: nope.yaml
    """)
    assert problems(child) == {
        "extends": (f"extends names {tmp_path / 'nope.yaml'}, which does not exist", f"{child}:2"),
    }


def test_missing_extends_entry_in_a_list_names_its_line(write, base, problems, tmp_path):
    child = write("child.yaml", """
        extends:
          - base.yaml
          - gone/nope.yaml
    """)
    assert problems(child) == {
        "extends": (f"extends names {tmp_path / 'gone' / 'nope.yaml'}, which does not exist", f"{child}:3"),
    }


@pytest.mark.parametrize("value", ["5", "{a: b}", "[base.yaml, 3]"])
def test_extends_must_be_a_path_or_list_of_paths(write, problems, value):
    child = write("child.yaml", f"description: x\nextends: {value}\n")
    assert problems(child) == {
        "extends": ("expected a path or a list of paths to recipe fragments", f"{child}:2"),
    }


def test_problems_name_the_file_and_line_that_set_the_value(write, base, problems):
    child = write("child.yaml", """
        extends: base.yaml
        optimizer:
          lr: -1
    """)
    write("base.yaml", BASE.replace("name: adamw", "name: adamx"))
    assert problems(child) == {
        "optimizer.name": (
            "unknown optimizer 'adamx': expected one of adamw, adamw_8bit, lion_8bit, paged_adamw_32bit, "
            "paged_adamw_8bit, paged_lion_8bit, sgd; did you mean 'adamw'?",
            f"{base}:16",  # optimizer.name is on line 16 of BASE
        ),
        "optimizer.lr": ("input should be greater than 0; found -1", f"{child}:3"),
    }


def test_a_list_replaced_by_a_child_is_blamed_on_the_child(write, base, problems):
    child = write("child.yaml", """
        extends: base.yaml
        description: replaced datasets
        data:
          datasets:
            - path: c.jsonl
              format: sharegpt
    """)
    [(key, (message, source))] = problems(child).items()
    assert (key, source) == ("data.datasets.0.format", f"{child}:6")
    assert message.startswith("unknown dataset format 'sharegpt': expected one of alpaca")


def test_a_later_value_is_blamed_on_the_later_file(write, base, problems):
    child = write("child.yaml", """
        extends: base.yaml
        lora:
          r: -3
    """)
    assert problems(child) == {"lora.r": ("input should be greater than 0; found -3", f"{child}:3")}


def test_all_problems_come_back_in_one_error(write, problems):
    path = write("r.yaml", """
        model:
          loader: from_config
          config: {model_type: llama}
        quantization:
          bits: 5
        lora:
          rr: 8
        data:
          datasets:
            - path: train.jsonl
              format: alpacca
        output_dir: out
    """)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    err = info.value
    assert err.recipe_path == str(path)
    assert err.report().splitlines() == [
        f"{path}: 3 problems:",
        f"  quantization.bits ({path}:5): input should be 4, 8 or 16; found 5",
        f"  lora.rr ({path}:7): unknown key; did you mean 'r'? (known keys here: r, alpha, dropout, target_modules, bias, modules_to_save, layers_to_transform, use_dora, use_rslora, init_lora_weights, init_from, dtype)",
        f"  data.datasets.0.format ({path}:11): unknown dataset format 'alpacca': expected one of alpaca, chat, chip2, completion, guanaco, hh_rlhf, longform, oasst, self_instruct, template, unnatural_instructions; did you mean 'alpaca'?",
    ]
    assert str(err) == err.report()
    assert isinstance(err, UserError)


def test_override_problems_and_file_problems_come_back_together(write, problems):
    path = write("r.yaml", """
        model:
          loader: from_config
          config: {model_type: llama}
        lora:
          r: 0
        data:
          datasets: [{path: train.jsonl}]
        output_dir: out
    """)
    assert problems(path, ["data.datasets.3.path=x", "lora.alpha", "training.epochs=-1"]) == {
        "data.datasets.3.path": ("index 3 is past the end of the list (1 item)", "command line"),
        "lora.alpha": ("override 'lora.alpha' is not key.path=value (e.g. lora.r=32)", "command line"),
        "lora.r": ("input should be greater than 0; found 0", f"{path}:5"),
        "training.epochs": ("input should be greater than 0; found -1", "command line"),
    }


def test_one_problem_report_is_singular(minimal):
    with pytest.raises(RecipeError) as info:
        load_recipe(minimal, ["lora.r=0"])
    assert info.value.report().splitlines() == [
        f"{minimal}: 1 problem:",
        "  lora.r (command line): input should be greater than 0; found 0",
    ]


def test_problem_line_format():
    assert Problem("a.b", "bad", "f.yaml:3").line() == "  a.b (f.yaml:3): bad"
    assert Problem("", "bad", "f.yaml").line() == "  <recipe> (f.yaml): bad"
    assert Problem("a", "bad").line() == "  a: bad"


def test_a_list_in_one_file_and_a_mapping_in_another_is_a_problem_not_a_crash(write, base, problems):
    child = write("child.yaml", """
        extends: base.yaml
        data:
          datasets:
            path: c.jsonl
    """)
    assert problems(child) == {
        "data.datasets": (
            "a list in one file and a mapping in another cannot be merged; "
            "write the same kind in both (a '- ' list item or key: value)",
            f"{child}:3",
        ),
    }


def test_a_value_yaml_reads_as_a_date_is_a_problem_with_its_line(write, problems):
    path = write("r.yaml", """
        model:
          loader: from_config
          config: {model_type: llama}
        data:
          datasets:
            - path: a.jsonl
            - path: 2024-01-01
        output_dir: out
    """)
    assert problems(path) == {
        "data.datasets.1.path": ("value cannot be used in a recipe: Value 'date' is not a supported primitive type", f"{path}:7"),
    }


def test_interpolation_is_not_resolved(minimal):
    recipe = load_recipe(minimal, ["description=${output_dir}"]).recipe
    assert recipe.description == "${output_dir}"


def test_missing_recipe_file(tmp_path, problems):
    path = tmp_path / "nope.yaml"
    assert problems(path) == {"": ("file not found", str(path))}


def test_recipe_path_that_is_a_folder(tmp_path, problems):
    assert problems(tmp_path) == {"": ("not a file", str(tmp_path))}


def test_loaded_recipe_yaml_reloads_to_the_same_recipe(write, minimal, tmp_path):
    for overrides in ([], ["quantization.bits=8"], ["quantization.bits=16", "lora.target_modules=[q_proj]"]):
        loaded = load_recipe(minimal, overrides)
        again = write("again.yaml", loaded.to_yaml())
        assert load_recipe(again).recipe == loaded.recipe, overrides
