"""The table in qlorafx.model.lora_support against peft itself: every combination the recipe check
refuses really fails in peft (so the refusal costs the user nothing), and every one it allows
builds through qlorafx's add_lora and gets gradients on a tiny model at that storage width."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig

from qlorafx.model.adapter import add_lora, initialize_from_data
from qlorafx.model.quantize import keep_weights_trainable_on_cpu, quantization_config
from qlorafx.recipe.errors import RecipeError
from qlorafx.recipe.load import load_recipe
from qlorafx.recipe.schema import QuantizationSection
from tests.train.tiny import tiny_recipe

CONFIG = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=2, vocab_size=64)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(CONFIG).save_pretrained(path)
    return path


def load(base_dir, bits: int):
    section = QuantizationSection(bits=bits)
    model = AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=quantization_config(section, "float32"),
                                                 dtype=torch.float32)
    keep_weights_trainable_on_cpu(model)
    return model


def lora_grads(model) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


REFUSED = [  # (bits, LoraConfig options, the recipe overrides that ask for the same)
    (8, {"use_dora": True}, ["lora.use_dora=true"]),
    (4, {"init_lora_weights": "pissa"}, ["lora.init_lora_weights=pissa"]),
    (8, {"init_lora_weights": "pissa_niter_4"}, ["lora.init_lora_weights=pissa_niter_4"]),
    (4, {"init_lora_weights": "orthogonal"}, ["lora.init_lora_weights=orthogonal"]),
    (4, {"init_lora_weights": "mica"}, ["lora.init_lora_weights=mica"]),
    (16, {"init_lora_weights": "orthogonal", "r": 3}, ["lora.init_lora_weights=orthogonal", "lora.r=3"]),
]


@pytest.mark.parametrize("bits, options, overrides", REFUSED, ids=lambda v: str(v))
def test_refused_combinations_fail_in_peft_and_are_refused_from_the_recipe(tmp_path, base_dir, bits, options, overrides):
    with pytest.raises(RecipeError, match=r"lora\.(use_dora|init_lora_weights)"):
        load_recipe(tiny_recipe(tmp_path), [f"quantization.bits={bits}", *overrides])
    options = {"r": 4, **options}
    with pytest.raises(Exception):  # noqa: B017 - any failure proves peft cannot run it
        model = get_peft_model(load(base_dir, bits), LoraConfig(target_modules="all-linear", **options))
        model.eval()
        with torch.no_grad():
            model(input_ids=torch.zeros(1, 4, dtype=torch.long))
        model.train()
        lora_grads(model)


ALLOWED = [
    (4, ["lora.use_dora=true"]), (16, ["lora.use_dora=true"]), (4, ["lora.use_rslora=true"]),
    (4, ["lora.init_lora_weights=gaussian"]), (8, ["lora.init_lora_weights=gaussian"]),
    (4, ["lora.init_lora_weights=false"]), (4, ["lora.init_lora_weights=olora"]), (8, ["lora.init_lora_weights=olora"]),
    (16, ["lora.init_lora_weights=pissa"]), (16, ["lora.init_lora_weights=pissa_niter_4"]),
    (16, ["lora.init_lora_weights=orthogonal"]), (16, ["lora.init_lora_weights=mica"]),
    (4, ["lora.init_lora_weights=eva"]), (8, ["lora.init_lora_weights=eva"]),
]


@pytest.mark.parametrize("bits, overrides", ALLOWED, ids=lambda v: str(v))
def test_allowed_combinations_train(tmp_path, base_dir, bits, overrides):
    recipe = load_recipe(tiny_recipe(tmp_path), [f"quantization.bits={bits}", "lora.r=4", *overrides]).recipe
    model = add_lora(load(base_dir, bits), recipe)
    if recipe.lora.init_lora_weights == "eva":
        # one batch again and again: EVA's incremental SVD stops once its components stop moving
        ids = torch.randint(0, 64, (8, 64), generator=torch.Generator().manual_seed(1))
        batches = [{"input_ids": ids, "labels": ids}] * 4
        initialize_from_data(model, recipe, batches)
        assert model.peft_config["default"].rank_pattern  # EVA redistributed the ranks
    grads = lora_grads(model)
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert sum(g.abs().sum().item() for g in grads.values()) > 0
    if recipe.lora.use_dora:
        assert any("lora_magnitude_vector" in n for n in grads)
