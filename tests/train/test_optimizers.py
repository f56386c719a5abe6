"""Every registered optimizer trains a tiny 4-bit QLoRA model through the real pipeline: the loss
falls, every LoRA weight moves, and the optimizer really is the one the recipe names (8-bit
optimizers keep 8-bit state; paged ones are paged classes, run unpaged on CPU)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import TrainerCallback

from qlorafx.recipe.load import load_recipe
from qlorafx.train.optimizers import OPTIMIZERS
from qlorafx.finetune import train
from tests.train.tiny import tiny_recipe

# (bitsandbytes / torch class, state dtype, learning rate that suits it on this tiny model).
# Lion's sign update makes every step lr-sized, so it gets a smaller lr; SGD a larger one.
EXPECTED = {
    "adamw": ("AdamW", torch.float32, 2e-2),
    "adamw_8bit": ("AdamW8bit", torch.uint8, 2e-2),
    "paged_adamw_8bit": ("PagedAdamW8bit", torch.uint8, 2e-2),
    "paged_adamw_32bit": ("PagedAdamW32bit", torch.float32, 2e-2),
    "lion_8bit": ("Lion8bit", torch.uint8, 2e-3),
    "paged_lion_8bit": ("PagedLion8bit", torch.uint8, 2e-3),
    "sgd": ("SGD", torch.float32, 2e-1),
}


def test_every_registered_optimizer_is_covered():
    assert sorted(EXPECTED) == OPTIMIZERS.keys()


class Watch(TrainerCallback):
    """Copies the trainable weights before and after training, and keeps the optimizer."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        self.optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it


def state_dtypes(optimizer) -> set[torch.dtype]:
    """dtypes of the per-parameter moment buffers (bitsandbytes: state1/state2; torch: exp_avg, momentum)."""
    names = ("state1", "state2", "exp_avg", "exp_avg_sq", "momentum_buffer")
    return {v.dtype for s in optimizer.state.values() for k, v in s.items() if k in names}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_optimizer_trains(tmp_path, name):
    class_name, state_dtype, lr = EXPECTED[name]
    # r=64 makes every LoRA matrix >= 4096 values: bitsandbytes keeps smaller ones in 32-bit state
    loaded = load_recipe(tiny_recipe(tmp_path), [
        f"optimizer.name={name}", f"optimizer.lr={lr}", "lora.r=64", "lora.alpha=64", "training.max_steps=12",
        "logging.every=4", "logging.backends=[jsonl]", "logging.sample_max_new_tokens=0", "data.val_size=0",
        "training.micro_batch_size=2"])
    watch = Watch()
    train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None, callbacks=(watch,))

    losses = [json.loads(line)["loss"] for line in open(tmp_path / "run" / "metrics.jsonl") if '"loss"' in line]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.9 * losses[0], losses
    assert watch.before and all("lora_" in n for n in watch.before)
    unchanged = [n for n in watch.before if torch.equal(watch.before[n], watch.after[n])]
    assert not unchanged, unchanged
    assert type(watch.optimizer).__name__ == class_name
    assert state_dtypes(watch.optimizer) == {state_dtype}
