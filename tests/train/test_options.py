"""Each storage width and gradient checkpointing train: the loss falls and the adapter is saved."""

from __future__ import annotations

import json

import pytest

from qlorafx.recipe.load import load_recipe
from qlorafx.finetune import train
from tests.train.tiny import tiny_recipe


@pytest.mark.parametrize("overrides", [
    ["quantization.bits=8"],
    ["quantization.bits=16"],
    ["quantization.quant_type=fp4", "quantization.double_quant=false"],
    ["training.gradient_checkpointing=true"],
], ids=["int8", "16bit", "fp4", "grad-checkpointing"])
def test_option_trains(tmp_path, overrides):
    loaded = load_recipe(tiny_recipe(tmp_path), [*overrides, "training.max_steps=12", "logging.every=4",
                                                 "logging.backends=[jsonl]", "logging.sample_max_new_tokens=0"])
    result = train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "run" / "metrics.jsonl") if '"loss"' in line]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert result.summary.eval_loss_after < result.summary.eval_loss_before
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
