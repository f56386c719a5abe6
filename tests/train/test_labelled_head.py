"""The output head and the loss at labelled positions only (train/labelled_head.py), through the REAL
trainer ('causal_lm' from the registry), the real collators and the Trainer's own training_step and
evaluation: the loss, the LoRA gradients and the eval loss equal the full computation's, packed and
unpacked, causal and T5, with the token count taken across two micro-batches by the Trainer itself.
Each case also checks that the head really saw only the labelled rows (or, where the shortcut is not
exact, every row)."""

from __future__ import annotations

import pytest
import torch

from qlorafx.data.build import prepare as prepare_data
from qlorafx.data.collate import COLLATORS, IGNORE_INDEX, collator_for
from qlorafx.model.adapter import add_lora
from qlorafx.model.architecture import is_encoder_decoder
from qlorafx.model.loaders import MODEL_LOADERS
from qlorafx.model.quantize import keep_weights_trainable_on_cpu, quantization_config
from qlorafx.recipe.load import load_recipe
from qlorafx.train import labelled_head
from qlorafx.train.optimizers import OPTIMIZERS
from qlorafx.train.trainers import TRAINERS
from tests.train.tiny import tiny_recipe, tiny_t5_recipe

COMMON = ["quantization.bits=4", "training.micro_batch_size=2", "training.grad_accum=2", "data.val_size=4",
          "logging.backends=[jsonl]"]


def _trainer(recipe_file, overrides, tmp_path, wrap=None):
    """The trainer the pipeline builds, from the same registries and steps (no run directory needed)."""
    recipe = load_recipe(recipe_file, [*COMMON, *overrides]).recipe
    loader = MODEL_LOADERS.get(recipe.model.loader)
    tokenizer = loader.tokenizer(recipe)
    encoder_decoder = is_encoder_decoder(loader.config(recipe, tokenizer))
    data = prepare_data(recipe, tokenizer, lambda *_: None, encoder_decoder)
    model = loader.model(recipe, tokenizer, tmp_path, "float32", quantization_config(recipe.quantization, "float32"))
    keep_weights_trainable_on_cpu(model)
    model = wrap(model) if wrap else add_lora(model, recipe)
    torch.manual_seed(1)
    for name, p in model.named_parameters():  # B starts at zero, which would leave A's gradient zero
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    collator = COLLATORS.get(collator_for(recipe, encoder_decoder))(tokenizer.pad_token_id,
                                                                     recipe.model.attn_implementation)
    return TRAINERS.get("causal_lm")(recipe, model, tokenizer, data, collator=collator,
                                     optimizer=OPTIMIZERS.get(recipe.optimizer.name)(recipe.optimizer),
                                     callbacks=[], run_dir=tmp_path)


def _rows_the_head_saw(trainer):
    seen = []
    head = trainer.model.get_base_model().get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, _args, logits: seen.append(logits.shape[:-1].numel()))
    return seen, handle


def _step(trainer, full: bool):
    """Two micro-batches through Trainer.training_step with the Trainer's own token count."""
    trainer.head_only_where_loss = not full
    # what Trainer.train sets before its steps: T5's per-micro-batch mean is divided by it
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    model = trainer.model
    model.train()
    model.zero_grad()
    torch.manual_seed(2)  # the same order and the same dropout masks (T5 has dropout) on both paths
    batches, num_items = trainer.get_batch_samples(iter(trainer.get_train_dataloader()), 2, trainer.args.device)
    seen, handle = _rows_the_head_saw(trainer)
    try:
        losses = [float(trainer.training_step(model, dict(b), num_items)) for b in batches]
    finally:
        handle.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return losses, grads, seen, batches


def _targets(batch, encoder_decoder: bool) -> int:
    labels = batch["labels"] if encoder_decoder else batch["labels"][:, 1:]
    return int((labels != IGNORE_INDEX).sum())


def _assert_same(trainer, encoder_decoder=False, shortcut_expected=True):
    full_losses, full_grads, full_seen, batches = _step(trainer, full=True)
    losses, grads, seen, same_batches = _step(trainer, full=False)
    assert all(torch.equal(a["labels"], b["labels"]) for a, b in zip(batches, same_batches))
    # the full path projects every position; the shortcut only the positions with a target
    assert full_seen == [b["labels"].numel() for b in batches]
    if shortcut_expected:
        assert seen == [_targets(b, encoder_decoder) for b in batches]
        assert all(0 < s < f for s, f in zip(seen, full_seen)), (seen, full_seen)
    else:
        assert seen == full_seen
    assert losses == pytest.approx(full_losses, rel=1e-5) and all(l > 0 for l in losses)
    assert grads.keys() == full_grads.keys() and len(grads) >= 6
    for name, g in full_grads.items():
        assert g.abs().sum() > 0, name
        assert torch.allclose(grads[name], g, rtol=1e-4, atol=1e-6), (name, (grads[name] - g).abs().max())
    # the evaluation loss (the Trainer's prediction_step with its own token count) too
    trainer.head_only_where_loss = False
    full_eval = trainer.evaluate()["eval_loss"]
    trainer.head_only_where_loss = True
    assert trainer.evaluate()["eval_loss"] == pytest.approx(full_eval, rel=1e-5)


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "padded"])
def test_causal_loss_and_lora_gradients_equal_the_full_head(tmp_path, packing):
    trainer = _trainer(tiny_recipe(tmp_path), [f"data.packing={str(packing).lower()}"], tmp_path)
    assert trainer.model_accepts_loss_kwargs  # the loss is a sum over the token count of both micro-batches
    assert labelled_head.full_path_reason(trainer.model) is None
    _assert_same(trainer)


def test_t5_loss_and_lora_gradients_equal_the_full_head(tmp_path):
    trainer = _trainer(tiny_t5_recipe(tmp_path), [], tmp_path)
    assert not trainer.model_accepts_loss_kwargs  # T5 averages per micro-batch (trainers.py)
    assert labelled_head.full_path_reason(trainer.model) is None
    _assert_same(trainer, encoder_decoder=True)


def test_a_head_trained_in_full_is_exact_too(tmp_path):
    """lm_head in modules_to_save: the head's own weights train, and their gradient matches as well."""
    trainer = _trainer(tiny_recipe(tmp_path), ["lora.modules_to_save=[lm_head]", "quantization.bits=16"], tmp_path)
    assert any("modules_to_save" in n and "lm_head" in n and p.requires_grad for n, p in trainer.model.named_parameters())
    _assert_same(trainer)


def test_lora_on_the_head_with_dropout_takes_the_full_path(tmp_path):
    """Dropout on the head's rows would draw other random numbers than on all rows: not exact, so the
    head sees every position (and without dropout the shortcut applies again)."""
    from peft import LoraConfig, get_peft_model

    def wrap(model, dropout):
        config = LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules=["q_proj", "lm_head"],
                            task_type="CAUSAL_LM")
        return get_peft_model(model, config)

    overrides = ["quantization.bits=16", "data.packing=false"]
    trainer = _trainer(tiny_recipe(tmp_path), overrides, tmp_path, wrap=lambda m: wrap(m, 0.1))
    trainer.model.train()
    assert "dropout" in labelled_head.full_path_reason(trainer.model)
    _, _, seen, batches = _step(trainer, full=False)
    assert seen == [b["labels"].numel() for b in batches]
    trainer.model.eval()  # no dropout while evaluating: exact again
    assert labelled_head.full_path_reason(trainer.model) is None

    trainer = _trainer(tiny_recipe(tmp_path), overrides, tmp_path, wrap=lambda m: wrap(m, 0.0))
    _assert_same(trainer)


def test_a_head_called_twice_is_an_error_not_a_wrong_loss(tmp_path):
    trainer = _trainer(tiny_recipe(tmp_path), ["data.packing=false"], tmp_path)
    base = trainer.model.get_base_model()
    batch = next(iter(trainer.get_train_dataloader()))
    batch.pop("num_tokens")
    head = base.get_output_embeddings()
    with pytest.raises(RuntimeError, match="called its output head 0 times"):
        with labelled_head.labelled_positions_only(trainer.model, batch):
            pass
    with pytest.raises(RuntimeError, match="expected"):
        with labelled_head.labelled_positions_only(trainer.model, batch):
            head(torch.zeros(3, base.config.hidden_size))


def test_evaluation_with_metrics_sees_every_positions_logits(tmp_path):
    """compute_metrics reads the logits beside the labels: there the head must see every position
    (the shortcut's logits, one row per target, would not line up with the labels)."""
    trainer = _trainer(tiny_recipe(tmp_path), ["data.packing=false"], tmp_path)
    shapes = []

    def metrics(prediction):
        shapes.append((prediction.predictions.shape[:-1], prediction.label_ids.shape))
        return {}

    trainer.compute_metrics = metrics
    trainer.evaluate()
    assert shapes and all(logits == labels for logits, labels in shapes), shapes
