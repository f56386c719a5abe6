"""lora.init_from: training continues from an existing adapter, exactly where it stopped; an adapter
that does not fit the recipe or the model is refused before any weight loads."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import TrainerCallback

from qlorafx.model.adapter import LoraOptionError
from qlorafx.model.adapter_files import AdapterError
from qlorafx.recipe.load import load_recipe
from qlorafx.finetune import train
from tests.train.tiny import tiny_recipe

QUICK = ["training.micro_batch_size=2", "logging.every=2", "logging.backends=[jsonl]",
         "logging.sample_max_new_tokens=0", "data.val_size=8"]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first")
    loaded = load_recipe(tiny_recipe(tmp), [*QUICK, "training.max_steps=8"])
    return tmp / "run", train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)


class StartWeights(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, self.weights[n])]


def test_training_continues_where_the_adapter_stopped(first, tmp_path):
    first_run, first_result = first
    start = StartWeights()
    loaded = load_recipe(tiny_recipe(tmp_path), [*QUICK, "training.max_steps=4", f"lora.init_from={first_run / 'adapter'}"])
    second = train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None, callbacks=(start,))
    trained = {n: p for n, p in first_result.model.named_parameters() if p.requires_grad}
    assert start.weights.keys() == trained.keys()
    for name, weight in start.weights.items():
        assert torch.equal(weight, trained[name]), name
    # the same base (rebuilt from model.config and the seed) and the same validation split
    assert second.summary.eval_loss_before == pytest.approx(first_result.summary.eval_loss_after, rel=1e-5)
    assert len(start.moved) == len(trained)  # and it trained on from there


def refused(tmp_path, overrides, error, message):
    loaded = load_recipe(tiny_recipe(tmp_path), [*QUICK, "training.max_steps=2", *overrides])
    with pytest.raises(error, match=message):
        train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    assert not (tmp_path / "run").exists()


def test_an_adapter_of_another_shape_is_refused(first, tmp_path):
    refused(tmp_path, [f"lora.init_from={first[0] / 'adapter'}", "lora.r=8"], LoraOptionError,
            "the adapter does not have this recipe's LoRA shape: lora.r is 8 but the adapter has 16")
    refused(tmp_path, [f"lora.init_from={first[0] / 'adapter'}", "lora.target_modules=[q_proj, v_proj]"],
            LoraOptionError, "the adapter wraps 14 layers, lora.target_modules picks 4")


def test_a_folder_without_an_adapter_is_refused(first, tmp_path):
    refused(tmp_path, [f"lora.init_from={first[0]}"], AdapterError,
            r"holds no PEFT adapter \(adapter_config.json and adapter_model.safetensors missing\)")
    refused(tmp_path, [f"lora.init_from={tmp_path / 'nowhere'}"], AdapterError, "is not a folder")


def test_an_adapter_trained_on_another_base_is_refused(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    other = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=2, vocab_size=259)
    model = get_peft_model(AutoModelForCausalLM.from_config(other), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    model.save_pretrained(tmp_path / "other")
    assert json.loads((tmp_path / "other" / "adapter_config.json").read_text())["r"] == 16
    refused(tmp_path, [f"lora.init_from={tmp_path / 'other'}"], LoraOptionError,
            r"does not fit this model's layers, so it was trained on another base: "
            r"model.layers.0.mlp.down_proj \(adapter 64->32, base 128->64\)")


def test_init_from_is_relative_to_the_recipe_that_sets_it(tmp_path):
    (tmp_path / "more").mkdir()
    path = tmp_path / "more" / "continue.yaml"
    path.write_text(f"extends: {tiny_recipe(tmp_path)}\nlora: {{init_from: ../adapters/mine}}\n")
    assert load_recipe(path).recipe.lora.init_from == str(tmp_path / "adapters" / "mine")
