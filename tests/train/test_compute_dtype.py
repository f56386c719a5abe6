"""compute_dtype: the run directory records what it resolved to, and that is what the 4-bit layers
computed in; the saved recipe keeps 'auto', so rerunning it on other hardware resolves afresh."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from transformers import TrainerCallback

from qlorafx.model.quantize import resolve_compute_dtype
from qlorafx.recipe.load import load_recipe
from qlorafx.finetune import train
from tests.train.tiny import tiny_recipe


class LayerDtypes(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.seen = {str(m.compute_dtype).removeprefix("torch.") for m in model.modules() if hasattr(m, "compute_dtype")}


@pytest.mark.parametrize("asked", ["auto", "bfloat16"])
def test_run_directory_records_the_resolved_compute_dtype(tmp_path, asked):
    loaded = load_recipe(tiny_recipe(tmp_path), [
        f"quantization.compute_dtype={asked}", "training.max_steps=1", "training.micro_batch_size=1",
        "logging.backends=[jsonl]", "logging.sample_max_new_tokens=0", "data.val_size=0"])
    layers = LayerDtypes()
    train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None, callbacks=(layers,))
    run = tmp_path / "run"
    recorded = json.loads((run / "versions.json").read_text())["compute_dtype"]
    resolved = resolve_compute_dtype(asked)
    assert recorded == resolved
    if asked == "auto" and not torch.cuda.is_available():
        assert recorded == "float32"  # bf16 4-bit matmuls run ~35x slower on CPU
    assert layers.seen == {recorded}  # every Linear4bit computed in it
    assert yaml.safe_load((run / "recipe.yaml").read_text())["quantization"]["compute_dtype"] == asked
