"""qlorafx schema: the JSON Schema editors use. The bundled recipes and fragments conform to it,
and the mistakes `validate` reports, it flags too."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from qlorafx.recipe.json_schema import recipe_json_schema
from tests.cli.test_cli import QUICKSTART, ROOT, heavy_modules_after, qlorafx


@pytest.fixture(scope="module")
def schema():
    done = qlorafx("schema")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def errors(schema, document) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document))


def test_schema_is_a_valid_draft_7_schema_with_descriptions_and_defaults(schema):
    jsonschema.Draft7Validator.check_schema(schema)  # the draft VS Code's YAML extension validates
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft7Validator
    lora = schema["$defs"]["LoraSection"]["properties"]
    assert lora["r"]["default"] == 16 and lora["r"]["description"] == "LoRA rank."
    assert schema["$defs"]["LoggingSection"]["properties"]["backends"]["items"]["enum"] == [
        "console", "jsonl", "tensorboard", "wandb"]
    assert schema == recipe_json_schema()


def test_every_bundled_recipe_conforms(schema):
    recipes = sorted((ROOT / "recipes").rglob("*.yaml"))
    assert QUICKSTART in recipes
    for path in recipes:
        assert errors(schema, yaml.safe_load(path.read_text())) == [], path


def test_every_config_fragment_conforms_to_the_fragment_schema():
    done = qlorafx("schema", "--fragment")
    fragment = json.loads(done.stdout)
    assert "required" not in json.dumps(fragment)
    fragments = sorted((ROOT / "configs").rglob("*.yaml"))
    assert fragments
    for path in fragments:
        assert errors(fragment, yaml.safe_load(path.read_text())) == [], path


def test_schema_flags_what_validate_refuses(schema):
    recipe = yaml.safe_load(QUICKSTART.read_text())
    del recipe["extends"]  # stands alone: model, data and output_dir are required
    recipe["lora"]["rank"] = 8  # unknown key
    recipe["quantization"] = {"bits": 5}
    recipe["logging"] = {"backends": ["console", "wandbb"]}
    del recipe["output_dir"]
    found = errors(schema, recipe)
    assert found == [
        ": 'output_dir' is a required property",
        "logging.backends.1: 'wandbb' is not one of ['console', 'jsonl', 'tensorboard', 'wandb']",
        "lora: Additional properties are not allowed ('rank' was unexpected)",
        "quantization.bits: 5 is not one of [4, 8, 16]",
    ]


def test_a_recipe_that_extends_may_leave_required_sections_to_its_parents(schema):
    assert errors(schema, {"extends": "base.yaml", "lora": {"r": 8}, "data": {"max_length": 512}}) == []
    standalone = {"model": {"path": "m"}, "data": {"max_length": 512}, "output_dir": "runs/x"}
    assert errors(schema, standalone) == ["data: 'datasets' is a required property"]
    # list items are not merged (a list replaces the parent's whole): their keys stay required
    assert errors(schema, {"extends": "base.yaml", "data": {"datasets": [{"format": "alpaca"}]}}) != []
    assert errors(schema, {"lora": {"r": 8}}) == [": 'data' is a required property", ": 'model' is a required property",
                                                   ": 'output_dir' is a required property"]


def test_schema_does_not_import_torch():
    assert heavy_modules_after(["schema"]) == [0, []]
