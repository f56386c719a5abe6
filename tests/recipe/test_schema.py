"""The Recipe schema: unknown keys, typed choices, registry names and cross-field rules."""

from __future__ import annotations

import subprocess
import sys

import pydantic
import pytest

from qlorafx.data.formats.alpaca import AlpacaDataset
from qlorafx.recipe import schema

from qlorafx.data.chat_templates import CHAT_TEMPLATES
from qlorafx.data.formats import FORMATS
from qlorafx.model.loaders import MODEL_LOADERS
from qlorafx.recipe.load import load_recipe
from qlorafx.recipe.schema import Recipe, Section
from qlorafx.train.backends import BACKENDS
from qlorafx.train.optimizers import OPTIMIZERS
from qlorafx.train.schedulers import SCHEDULERS
from qlorafx.train.trainers import TRAINERS

CL = "command line"


def test_minimal_recipe_fills_defaults(minimal, tmp_path):
    recipe = load_recipe(minimal).recipe
    assert recipe.model.loader == "from_config" and recipe.model.config == {"model_type": "llama"}
    assert (recipe.quantization.bits, recipe.quantization.quant_type, recipe.quantization.double_quant) == (4, "nf4", True)
    assert recipe.quantization.compute_dtype == "auto"
    assert (recipe.lora.r, recipe.lora.alpha, recipe.lora.target_modules) == (16, 32, "all-linear")
    assert recipe.data.datasets[0].format == "alpaca"
    assert recipe.data.datasets[0].path == str(tmp_path / "train.jsonl")
    assert (recipe.optimizer.name, recipe.scheduler.name, recipe.training.trainer) == ("paged_adamw_32bit", "constant", "causal_lm")
    assert recipe.training.epochs is None and recipe.training.max_steps is None


def test_every_section_forbids_unknown_keys_and_is_frozen():
    sections = [Recipe, *Section.__subclasses__()]
    assert len(sections) >= 10
    for section in sections:
        assert section.model_config["extra"] == "forbid", section.__name__
        assert section.model_config["frozen"] is True, section.__name__


def test_recipe_is_immutable(minimal):
    recipe = load_recipe(minimal).recipe
    with pytest.raises(pydantic.ValidationError):
        recipe.lora.r = 64


def _known(model) -> str:
    return ", ".join(model.model_fields)


@pytest.mark.parametrize(
    "key, model",
    [
        ("bogus", schema.Recipe),
        ("model.bogus", schema.ModelSection),
        ("quantization.bogus", schema.QuantizationSection),
        ("lora.bogus", schema.LoraSection),
        ("data.bogus", schema.DataSection),
        ("data.datasets.0.bogus", AlpacaDataset),
        ("optimizer.bogus", schema.OptimizerSection),
        ("scheduler.bogus", schema.SchedulerSection),
        ("training.bogus", schema.TrainingSection),
        ("logging.bogus", schema.LoggingSection),
    ],
)
def test_unknown_key_in_each_section_is_rejected(minimal, problems, key, model):
    known = _known(model)
    assert len(model.model_fields) >= 3
    assert problems(minimal, [f"{key}=1"]) == {key: (f"unknown key; remove it (known keys here: {known})", CL)}


@pytest.mark.parametrize(
    "key, meant",
    [("lora.alpah", "alpha"), ("lora.rr", "r"), ("optimizer.learning_rate", "lr"), ("optimizer.zzz", None), ("training.max_step", "max_steps"),
     ("data.datasets.0.fromat", "format"), ("quantization.bit", "bits"), ("outputdir", "output_dir")],
)
def test_unknown_key_suggests_the_key_meant(minimal, problems, key, meant):
    [(message, source)] = problems(minimal, [f"{key}=1"]).values()
    assert source == CL
    if meant:
        assert message.startswith(f"unknown key; did you mean {meant!r}? (known keys here: ")
    else:
        assert message.startswith("unknown key; remove it (known keys here: ")


def test_unknown_key_in_a_file_names_its_line(write, problems):
    path = write("r.yaml", """
        model:
          loader: from_config
          config: {model_type: llama}
        data:
          datasets:
            - path: train.jsonl
              fromat: alpaca
        output_dir: out
    """)
    assert problems(path) == {
        "data.datasets.0.fromat": ("unknown key; did you mean 'format'? (known keys here: path, format, weight, max_examples, split, columns)", f"{path}:7"),
    }


@pytest.mark.parametrize(
    "override, key, message",
    [
        ("quantization.bits=5", "quantization.bits", "input should be 4, 8 or 16; found 5"),
        ("quantization.bits=4bit", "quantization.bits", "input should be 4, 8 or 16; found '4bit'"),
        ("quantization.quant_type=int4", "quantization.quant_type", "input should be 'nf4' or 'fp4'; found 'int4'"),
        ("quantization.compute_dtype=bf16", "quantization.compute_dtype",
         "input should be 'auto', 'bfloat16', 'float16' or 'float32'; found 'bf16'"),
        ("model.attn_implementation=flash", "model.attn_implementation",
         "input should be 'sdpa', 'eager' or 'flash_attention_2'; found 'flash'"),
        ("logging.backends=[console, mlflow]", "logging.backends.1",
         "unknown metrics backend 'mlflow': expected one of console, jsonl, tensorboard, wandb"),
        ("lora.r=0", "lora.r", "input should be greater than 0; found 0"),
        ("lora.r=abc", "lora.r", "input should be a valid integer, unable to parse string as an integer; found 'abc'"),
        ("lora.dropout=1", "lora.dropout", "input should be less than 1; found 1"),
        ("lora.target_modules=5", "lora.target_modules", "input should be a valid list or input should be a valid string; found 5"),
        ("lora.target_modules=[]", "lora.target_modules", "an empty list targets nothing; give module names or 'all-linear'"),
        ("training.seed=1.5", "training.seed", "input should be a valid integer, got a number with a fractional part; found 1.5"),
        ("data.datasets=[]", "data.datasets", "list should have at least 1 item after validation, not 0; found a list"),
    ],
)
def test_typed_values_are_checked(minimal, problems, override, key, message):
    assert problems(minimal, [override]) == {key: (message, CL)}


@pytest.mark.parametrize("bits", [4, 8, 16])
@pytest.mark.parametrize("dtype", ["auto", "bfloat16", "float16", "float32"])
def test_typed_choices_accept_every_allowed_value(minimal, bits, dtype):
    q = load_recipe(minimal, [f"quantization.bits={bits}", f"quantization.compute_dtype={dtype}"]).recipe.quantization
    assert (q.bits, q.compute_dtype) == (bits, dtype)


def test_fp4_is_accepted(minimal):
    assert load_recipe(minimal, ["quantization.quant_type=fp4"]).recipe.quantization.quant_type == "fp4"


def test_target_modules_takes_a_list_or_a_string(minimal):
    assert load_recipe(minimal, ["lora.target_modules=[q_proj, v_proj]"]).recipe.lora.target_modules == ["q_proj", "v_proj"]
    assert load_recipe(minimal, ["lora.target_modules=.*proj"]).recipe.lora.target_modules == ".*proj"


def _unknown(kind: str, key: str, registry, meant: str | None) -> str:
    hint = f"; did you mean {meant!r}?" if meant else ""
    return f"unknown {kind} {key!r}: expected one of {', '.join(registry.keys())}{hint}"


@pytest.mark.parametrize(
    "key, value, kind, registry, meant",
    [
        ("data.datasets.0.format", "alpacca", "dataset format", FORMATS, "alpaca"),
        ("optimizer.name", "adamx", "optimizer", OPTIMIZERS, "adamw"),
        ("optimizer.name", "paged_adamw32", "optimizer", OPTIMIZERS, "paged_adamw_32bit"),
        ("scheduler.name", "cosin", "scheduler", SCHEDULERS, "cosine"),
        ("scheduler.name", "polynomial", "scheduler", SCHEDULERS, None),
        ("model.loader", "pretrain", "model loader", MODEL_LOADERS, "pretrained"),
        ("training.trainer", "causal", "trainer", TRAINERS, "causal_lm"),
        ("logging.backends.0", "jsonll", "metrics backend", BACKENDS, "jsonl"),
        ("data.datasets.0.chat_template", "chatmll", "chat template", CHAT_TEMPLATES, "chatml"),
    ],
)
def test_registry_names_are_checked_with_the_available_keys(minimal, problems, key, value, kind, registry, meant):
    more = ["data.datasets.0.format=chat"] if "chat_template" in key else []
    override = f"{key.removesuffix('.0')}=[{value}]" if key.endswith("backends.0") else f"{key}={value}"
    assert problems(minimal, [*more, override]) == {key: (_unknown(kind, value, registry, meant), CL)}


def test_every_registry_key_lists_its_registry_in_the_json_schema():
    """One type for every registry key: editors complete each from the same enum (formats by the discriminator)."""
    found = Recipe.model_json_schema()
    defs = found["$defs"]
    assert defs["ModelSection"]["properties"]["loader"]["enum"] == MODEL_LOADERS.keys()
    assert defs["OptimizerSection"]["properties"]["name"]["enum"] == OPTIMIZERS.keys()
    assert defs["SchedulerSection"]["properties"]["name"]["enum"] == SCHEDULERS.keys()
    assert defs["TrainingSection"]["properties"]["trainer"]["enum"] == TRAINERS.keys()
    assert defs["LoggingSection"]["properties"]["backends"]["items"]["enum"] == BACKENDS.keys()
    assert defs["ChatDataset"]["properties"]["chat_template"]["anyOf"][0]["enum"] == CHAT_TEMPLATES.keys()
    entries = defs["DataSection"]["properties"]["datasets"]["items"]["oneOf"]
    formats = [defs[entry["$ref"].split("/")[-1]]["properties"]["format"]["const"] for entry in entries]
    assert sorted(formats) == FORMATS.keys()


@pytest.mark.parametrize("bits", [8, 16])
def test_fp4_with_bits_8_or_16_is_rejected(write, problems, bits):
    path = write("r.yaml", f"""
        model:
          loader: from_config
          config: {{model_type: llama}}
        quantization:
          bits: {bits}
          quant_type: fp4
        data:
          datasets: [{{path: train.jsonl}}]
        output_dir: out
    """)
    message = f"quant_type fp4 is a 4-bit data type, but bits is {bits}; set bits: 4 or quant_type: nf4"
    assert problems(path) == {"quantization": (message, f"{path}:4")}


@pytest.mark.parametrize("bits", [8, 16])
def test_bits_override_works_on_a_4bit_recipe(write, bits):
    path = write("r.yaml", """
        model:
          loader: from_config
          config: {model_type: llama}
        quantization: {bits: 4, quant_type: nf4, double_quant: true}
        data:
          datasets: [{path: train.jsonl}]
        output_dir: out
    """)
    assert load_recipe(path, [f"quantization.bits={bits}"]).recipe.quantization.bits == bits


@pytest.mark.parametrize("bits", [8, 16])
def test_bits_8_or_16_alone_is_fine(minimal, bits):
    q = load_recipe(minimal, [f"quantization.bits={bits}"]).recipe.quantization
    assert q.bits == bits


def test_four_bit_options_with_bits_4_are_fine(minimal):
    q = load_recipe(minimal, ["quantization.quant_type=fp4", "quantization.double_quant=false"]).recipe.quantization
    assert (q.bits, q.quant_type, q.double_quant) == (4, "fp4", False)


def test_epochs_and_max_steps_together_are_rejected(minimal, problems):
    assert problems(minimal, ["training.epochs=2", "training.max_steps=100"]) == {
        "training": ("set epochs or max_steps, not both", CL)
    }


@pytest.mark.parametrize("override", ["training.epochs=2", "training.max_steps=100"])
def test_epochs_or_max_steps_alone_is_fine(minimal, override):
    load_recipe(minimal, [override])


def test_warmup_steps_and_ratio_together_are_rejected(minimal, problems):
    assert problems(minimal, ["scheduler.warmup_steps=10", "scheduler.warmup_ratio=0.1"]) == {
        "scheduler": ("set warmup_steps or warmup_ratio, not both", CL)
    }


def test_pretrained_loader_needs_a_path(write, problems):
    path = write("r.yaml", """
        model:
          loader: pretrained
        data:
          datasets: [{path: train.jsonl}]
        output_dir: out
    """)
    assert problems(path) == {"model": ("loader 'pretrained' needs model.path (a hub id or local folder)", f"{path}:1")}


def test_pretrained_is_the_default_loader(write, problems):
    path = write("r.yaml", """
        model: {}
        data:
          datasets: [{path: train.jsonl}]
        output_dir: out
    """)
    assert problems(path)["model"][0] == "loader 'pretrained' needs model.path (a hub id or local folder)"


def test_pretrained_with_a_hub_id_is_fine(write):
    path = write("r.yaml", """
        model:
          path: org/some-model
        data:
          datasets: [{path: train.jsonl}]
        output_dir: out
    """)
    assert load_recipe(path).recipe.model.path == "org/some-model"  # not a local folder: left as written


def test_from_config_needs_model_type(minimal, problems):
    assert problems(minimal, ["model.config={hidden_size: 8}"]) == {
        "model": ("loader 'from_config' needs model.config.model_type (e.g. llama)", f"{minimal}:1")
    }


@pytest.mark.parametrize("value, message", [
    ("1.5", "val_size is a fraction below 1 or a whole count of examples"),
    ("-0.1", "input should be greater than or equal to 0; found -0.1"),
])
def test_bad_val_size_is_rejected(minimal, problems, value, message):
    assert problems(minimal, [f"data.val_size={value}"]) == {"data.val_size": (message, CL)}


@pytest.mark.parametrize("value", [0, 0.1, 0.99, 1, 50])
def test_val_size_fraction_or_whole_count(minimal, value):
    assert load_recipe(minimal, [f"data.val_size={value}"]).recipe.data.val_size == value


@pytest.mark.parametrize("section", ["model", "data", "output_dir"])
def test_required_sections(write, problems, section):
    kept = {
        "model": "model: {loader: from_config, config: {model_type: llama}}",
        "data": "data: {datasets: [{path: train.jsonl}]}",
        "output_dir": "output_dir: out",
    }
    path = write("r.yaml", "\n".join(text for key, text in kept.items() if key != section) + "\n")
    assert problems(path) == {section: ("required key is missing; add it", str(path))}


def test_schema_does_not_import_torch():
    code = ("import sys, qlorafx.recipe.load, qlorafx.recipe.schema; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'bitsandbytes', 'peft')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
