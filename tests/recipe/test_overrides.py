"""Command-line overrides: key.path=value, applied over every file, values typed as YAML."""

from __future__ import annotations

import pytest

from qlorafx.recipe.load import load_recipe
from qlorafx.recipe.overrides import apply_overrides
from qlorafx.recipe.sources import SourceMap

CL = "command line"


def _apply(data: dict, overrides: list[str]) -> tuple[dict, list, SourceMap]:
    problems: list = []
    sources = SourceMap([])
    return apply_overrides(data, overrides, sources, problems), problems, sources


def test_overrides_win_over_every_file(write):
    write("base.yaml", """
        model:
          loader: from_config
          config: {model_type: llama}
        lora:
          r: 8
        data:
          datasets: [{path: a.jsonl}]
        output_dir: out
    """)
    child = write("child.yaml", """
        extends: base.yaml
        lora:
          r: 16
    """)
    assert load_recipe(child).recipe.lora.r == 16
    assert load_recipe(child, ["lora.r=32"]).recipe.lora.r == 32
    assert load_recipe(child, ["lora.r=32", "lora.r=64"]).recipe.lora.r == 64  # later override wins


def test_list_items_are_indexed_by_number(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write("r.yaml", """
        model:
          loader: from_config
          config: {model_type: llama}
        data:
          datasets:
            - path: a.jsonl
            - path: b.jsonl
        output_dir: out
    """)
    datasets = load_recipe(path, ["data.datasets.1.path=x.jsonl"]).recipe.data.datasets
    assert [d.path for d in datasets] == [str(tmp_path / "a.jsonl"), str(tmp_path / "x.jsonl")]


def test_a_whole_list_can_be_given(minimal, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    datasets = load_recipe(minimal, ["data.datasets=[{path: x.jsonl}, {path: y.json}]"]).recipe.data.datasets
    assert [d.path for d in datasets] == [str(tmp_path / "x.jsonl"), str(tmp_path / "y.json")]


@pytest.mark.parametrize(
    "text, value",
    [
        ("32", 32), ("-1", -1), ("0.5", 0.5), ("3.0e-4", 3.0e-4), ("true", True), ("false", False),
        ("null", None), ("~", None), ("nf4", "nf4"), ("'32'", "32"), ("[q_proj, v_proj]", ["q_proj", "v_proj"]),
        ("{a: 1}", {"a": 1}), ("", ""), ("a=b=c", "a=b=c"), ("x == y", "x == y"),
        ("un[balanced", "un[balanced"), ("'[quoted'", "[quoted"), ("'Say: hi'", "Say: hi"), ("Say: hi", {"Say": "hi"}),
    ],
)
def test_values_are_typed_as_yaml(text, value):
    data, problems, _ = _apply({}, [f"x={text}"])
    assert problems == []
    assert data == {"x": value}
    assert type(data["x"]) is type(value)


def test_an_unquoted_colon_value_is_a_mapping_and_validation_says_so(minimal, problems):
    assert problems(minimal, ["description=Say: hi"]) == {"description": ("input should be a valid string; found a mapping", CL)}
    assert load_recipe(minimal, ["description='Say: hi'"]).recipe.description == "Say: hi"


def test_lora_r_gives_an_int(minimal):
    data, problems, _ = _apply({"lora": {"r": 8}}, ["lora.r=32"])
    assert data["lora"]["r"] == 32 and type(data["lora"]["r"]) is int
    assert load_recipe(minimal, ["lora.r=32"]).recipe.lora.r == 32


def test_null_unsets_a_value(write):
    path = write("r.yaml", """
        model:
          loader: from_config
          config: {model_type: llama}
        data:
          datasets: [{path: a.jsonl}]
        training:
          epochs: 2
        output_dir: out
    """)
    training = load_recipe(path, ["training.epochs=null", "training.max_steps=50"]).recipe.training
    assert (training.epochs, training.max_steps) == (None, 50)


def test_values_may_contain_equals_signs(minimal):
    assert load_recipe(minimal, ["description=lr=3e-4, r=16"]).recipe.description == "lr=3e-4, r=16"


def test_only_the_first_equals_splits(minimal):
    assert load_recipe(minimal, ["description==x"]).recipe.description == "=x"


def test_overrides_do_not_touch_the_input():
    data = {"lora": {"r": 8}, "data": {"datasets": [{"path": "a"}]}}
    out, problems, _ = _apply(data, ["lora.r=1", "data.datasets.0.path=b"])
    assert data == {"lora": {"r": 8}, "data": {"datasets": [{"path": "a"}]}}
    assert out == {"lora": {"r": 1}, "data": {"datasets": [{"path": "b"}]}}


def test_overridden_paths_are_recorded_with_the_mappings_they_create():
    _, _, sources = _apply({"lora": {"r": 8}}, ["lora.r=1", "new.deep.key=2"])
    assert sources.overridden == {"lora.r", "new", "new.deep", "new.deep.key"}
    assert sources.where("lora.r") == CL
    assert sources.where("new.deep") == CL


def test_index_past_the_end_is_an_error(minimal, problems):
    assert problems(minimal, ["data.datasets.1.path=x.jsonl"]) == {
        "data.datasets.1.path": ("index 1 is past the end of the list (1 item)", CL),
    }


def test_index_past_the_end_of_a_longer_list():
    _, problems, _ = _apply({"a": [1, 2, 3]}, ["a.3=4"])
    assert [(p.path, p.message, p.source) for p in problems] == [("a.3", "index 3 is past the end of the list (3 items)", CL)]


def test_a_list_needs_a_number_index(minimal, problems):
    assert problems(minimal, ["data.datasets.first.path=x"]) == {
        "data.datasets.first.path": ("data.datasets is a list; index it by number, e.g. data.datasets.0", CL),
    }


def test_a_path_through_a_plain_value_is_an_error(minimal, problems):
    assert problems(minimal, ["output_dir.sub=x"]) == {
        "output_dir.sub": ("output_dir holds a plain value, so output_dir.sub cannot be set below it", CL),
    }


@pytest.mark.parametrize("key, meant", [("lora.rr", "r"), ("lora.alhpa", "alpha"), ("training.max_step", "max_steps")])
def test_an_unknown_key_is_rejected_with_did_you_mean(minimal, problems, key, meant):
    [(found_key, (message, source))] = problems(minimal, [f"{key}=3"]).items()
    assert (found_key, source) == (key, CL)
    assert message.startswith(f"unknown key; did you mean {meant!r}? (known keys here: ")


def test_an_unknown_section_made_by_an_override_is_blamed_on_the_command_line(minimal, problems):
    found = problems(minimal, ["trainig.epochs=1", "lora.bogus.deep=1"])
    assert found["trainig"][1] == CL
    assert found["trainig"][0].startswith("unknown key; did you mean 'training'?")
    assert found["lora.bogus"] == ("unknown key; remove it (known keys here: r, alpha, dropout, target_modules, bias, modules_to_save, layers_to_transform, use_dora, use_rslora, init_lora_weights, init_from, dtype)", CL)


def test_a_section_made_by_overrides_is_blamed_on_the_command_line(minimal, problems):
    assert problems(minimal, ["training.epochs=1", "training.max_steps=5"]) == {
        "training": ("set epochs or max_steps, not both", CL),
    }


@pytest.mark.parametrize(
    "override, key",
    [("lora.r", "lora.r"), ("=3", ""), (" =3", ""), ("lora..r=3", "lora..r"), (".r=3", ".r"), ("lora.=3", "lora.")],
)
def test_malformed_override(minimal, problems, override, key):
    assert problems(minimal, [override]) == {key: (f"override {override!r} is not key.path=value (e.g. lora.r=32)", CL)}


def test_every_override_problem_is_reported(minimal, problems):
    assert set(problems(minimal, ["a", "data.datasets.9.path=x", "output_dir.x=1", "lora.rr=1"])) == {
        "a", "data.datasets.9.path", "output_dir.x", "lora.rr",
    }


def test_a_list_or_mapping_left_open_is_a_problem_not_a_string(minimal, problems):
    """`lora.target_modules=[q_proj, v_proj]` unquoted: the shell splits it at the space, and the first half
    was read as the text '[q_proj,', then refused as a regex; it is a list left open, and said so."""
    found = problems(minimal, ["lora.target_modules=[q_proj,", "v_proj]", "description={draft"])
    assert found["lora.target_modules"] == (
        "'[q_proj,' starts a YAML list that does not close (while parsing a flow node); write it whole, e.g. "
        "[q_proj, v_proj], and quote the whole override for the shell when it holds spaces: "
        "'key=[q_proj, v_proj]'", CL)
    assert found["description"][0].startswith("'{draft' starts a YAML mapping that does not close")
    assert found["v_proj]"][0].startswith("override 'v_proj]' is not key.path=value")
