"""LoRA options through the real pipeline: what trains is what the recipe says, the loss falls, and
the saved adapter, loaded onto the base the way a user would, reproduces the trained model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from qlorafx.model.adapter import LoraOptionError
from qlorafx.recipe.load import load_recipe
from qlorafx.finetune import train
from tests.train.tiny import tiny_recipe

QUICK = ["training.max_steps=8", "training.micro_batch_size=2", "logging.every=4", "logging.backends=[jsonl]",
         "logging.sample_max_new_tokens=0", "data.val_size=4"]
PROMPTS = ["### Instruction:\nWhat sound does a cow make?", "A cow says"]


def run(tmp_path: Path, overrides: list[str], config_extra: str = ""):
    recipe_path = tiny_recipe(tmp_path)
    if config_extra:  # extra model.config fields, e.g. biases on the linear layers
        text = recipe_path.read_text().replace("initializer_range: 0.1}", f"initializer_range: 0.1, {config_extra}}}")
        recipe_path.write_text(text)
    loaded = load_recipe(recipe_path, [*QUICK, *overrides])
    result = train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "run" / "metrics.jsonl") if '"loss"' in line]
    return loaded.recipe, result, losses


def reloaded_logits(recipe, run_dir: Path, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of base_model + the saved adapter, loaded as docs/run-directory.md shows, and of the base alone."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from qlorafx.model.quantize import keep_weights_trainable_on_cpu, quantization_config

    base = AutoModelForCausalLM.from_pretrained(
        run_dir / "base_model", quantization_config=quantization_config(recipe.quantization, "float32"), dtype=torch.float32)
    keep_weights_trainable_on_cpu(base)
    model = PeftModel.from_pretrained(base, run_dir / "adapter").eval()
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        with model.disable_adapter():
            alone = model(**batch).logits
        return model(**batch).logits, alone


def trained_logits(result) -> torch.Tensor:
    batch = result.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return result.model.eval()(**batch).logits


def test_bias_modules_to_save_layers_dora_rslora_train_and_save(tmp_path):
    recipe, result, losses = run(tmp_path, [
        "lora.bias=all", "lora.modules_to_save=[lm_head]", "lora.layers_to_transform=[1]", "lora.use_dora=true",
        "lora.use_rslora=true"], config_extra="attention_bias: true, mlp_bias: true")
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    trainable = [n for n, p in result.model.named_parameters() if p.requires_grad]
    lora = [n for n in trainable if ".lora_" in n]
    assert lora and all(".layers.1." in n for n in lora)  # layers_to_transform
    assert any("lora_magnitude_vector" in n for n in lora)  # DoRA
    assert any("lm_head.modules_to_save" in n for n in trainable)  # trained in full
    biases = [n for n in trainable if n.endswith(".bias")]
    assert any(".layers.0." in n for n in biases)  # bias=all: also outside the wrapped layers
    layer = result.model.base_model.model.model.layers[1].self_attn.q_proj
    assert layer.scaling["default"] == pytest.approx(recipe.lora.alpha / math.sqrt(recipe.lora.r))  # rsLoRA

    config = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert config["use_dora"] and config["use_rslora"] and config["bias"] == "all"
    assert config["layers_to_transform"] == [1] and "lm_head" in config["modules_to_save"]
    got, alone = reloaded_logits(recipe, tmp_path / "run", result.tokenizer)
    want = trained_logits(result)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert (alone - want).abs().max() > 1e-2  # and what was saved matters


def test_pissa_adapter_is_saved_for_the_original_base(tmp_path):
    """PiSSA moves the top singular directions out of the base: trained without the conversion, the
    adapter would only fit the mutated base. Saved converted, it fits base_model as written."""
    recipe, result, losses = run(tmp_path, ["quantization.bits=16", "lora.init_lora_weights=pissa", "lora.r=4",
                                            "lora.alpha=4", "optimizer.lr=5e-3"])
    assert losses[-1] < losses[0]
    adapter = tmp_path / "run" / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["init_lora_weights"] is True  # plain LoRA of rank 2r
    assert not (tmp_path / "run" / "adapter_init").exists()
    got, alone = reloaded_logits(recipe, tmp_path / "run", result.tokenizer)
    want = trained_logits(result)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert (alone - want).abs().max() > 1e-3


def test_eva_initialises_from_the_training_data(tmp_path):
    recipe, result, losses = run(tmp_path, ["lora.init_lora_weights=eva", "lora.r=4", "training.micro_batch_size=8",
                                            "training.max_steps=4", "logging.every=2"])  # EVA's SVD: fewer, larger batches
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    config = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert config["rank_pattern"]  # EVA gave the layers their own ranks
    got, _ = reloaded_logits(recipe, tmp_path / "run", result.tokenizer)
    assert torch.allclose(got, trained_logits(result), atol=1e-4)


@pytest.mark.parametrize("overrides, message", [
    (["lora.modules_to_save=[q_proj]"], "lora.modules_to_save 'q_proj' names 2 layers stored in 4 bits "
                                        r"\(e.g. model.layers.0.self_attn.q_proj\); quantized weights cannot train in full"),
    (["lora.modules_to_save=[head]"], "lora.modules_to_save 'head' names no module of this model; modules that can "
                                      "train in full are named embed_tokens, input_layernorm, lm_head, norm"),
    (["lora.layers_to_transform=[1, 5]"], r"lora.layers_to_transform \[5\] names layers this model does not have: "
                                          "its targeted layers are layers 0 to 1"),
    (["lora.target_modules=[q_proj]", "lora.modules_to_save=[q_proj]", "quantization.bits=16"],
     "no layer is left to wrap"),
])
def test_options_that_do_not_fit_the_model_are_refused_before_weights_load(tmp_path, overrides, message):
    loaded = load_recipe(tiny_recipe(tmp_path), [*QUICK, *overrides])
    with pytest.raises(LoraOptionError, match=message):
        train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    assert not (tmp_path / "run").exists()
