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


PATHS = ("full", "labelled", "fused")  # the head over every position; at labelled ones; fused with the loss there


def _step(trainer, path: str, count: bool = True):
    """Two micro-batches through Trainer.training_step with the Trainer's own token count (or, ``count``
    False, none: then each micro-batch's loss is its mean, divided by grad_accum)."""
    trainer.head_only_where_loss = path != "full"
    trainer.fuse_head_with_loss = path == "fused"
    # what Trainer.train sets before its steps: T5's per-micro-batch mean is divided by it
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    model = trainer.model
    model.train()
    model.zero_grad()
    torch.manual_seed(2)  # the same order and the same dropout masks (T5 has dropout) on both paths
    batches, num_items = trainer.get_batch_samples(iter(trainer.get_train_dataloader()), 2, trainer.args.device)
    seen, handle = _rows_the_head_saw(trainer)
    try:
        losses = [float(trainer.training_step(model, dict(b), num_items if count else None)) for b in batches]
    finally:
        handle.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return losses, grads, seen, batches


def _targets(batch, encoder_decoder: bool) -> int:
    labels = batch["labels"] if encoder_decoder else batch["labels"][:, 1:]
    return int((labels != IGNORE_INDEX).sum())


def _assert_same(trainer, encoder_decoder=False, shortcut_expected=True, fused_expected=False, count=True):
    """Loss and every trained gradient of the labelled and fused paths equal the full path's; each path's
    head saw the rows it should (fused: none, the product is taken inside the loss), so that a fallback
    cannot pass for the path under test."""
    full_losses, full_grads, full_seen, batches = _step(trainer, "full", count)
    # the full path projects every position; the shortcut only the positions with a target
    assert full_seen == [b["labels"].numel() for b in batches]
    for path in PATHS[1:]:
        losses, grads, seen, same_batches = _step(trainer, path, count)
        assert all(torch.equal(a["labels"], b["labels"]) for a, b in zip(batches, same_batches))
        if not shortcut_expected:
            assert seen == full_seen
        elif path == "fused" and fused_expected:
            assert seen == [0] * len(batches)
        else:
            assert seen == [_targets(b, encoder_decoder) for b in batches]
            assert all(0 < s < f for s, f in zip(seen, full_seen)), (seen, full_seen)
        assert losses == pytest.approx(full_losses, rel=1e-5) and all(l > 0 for l in losses), (path, losses)
        assert grads.keys() == full_grads.keys() and len(grads) >= 6
        for name, g in full_grads.items():
            assert g.abs().sum() > 0, name
            assert torch.allclose(grads[name], g, rtol=1e-4, atol=1e-6), (path, name, (grads[name] - g).abs().max())
    assert (labelled_head.fused_path_reason(trainer.model) is None) == fused_expected  # the model is training here
    # the evaluation loss (the Trainer's prediction_step with its own token count) too
    trainer.head_only_where_loss = False
    full_eval = trainer.evaluate()["eval_loss"]
    trainer.head_only_where_loss = True
    assert trainer.evaluate()["eval_loss"] == pytest.approx(full_eval, rel=1e-5)


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize("count", [True, False], ids=["token-count", "no-count"])
def test_causal_loss_and_lora_gradients_equal_the_full_head(tmp_path, packing, count):
    """Fused and unfused at labelled positions, against every position; with the Trainer's token count of
    both micro-batches (a sum divided by it) and without (each micro-batch's mean, divided by grad_accum)."""
    trainer = _trainer(tiny_recipe(tmp_path), [f"data.packing={str(packing).lower()}"], tmp_path)
    assert trainer.model_accepts_loss_kwargs  # the loss is a sum over the token count of both micro-batches
    assert labelled_head.full_path_reason(trainer.model) is None
    _assert_same(trainer, fused_expected=True, count=count)


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
    _, _, seen, batches = _step(trainer, "fused")
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


def _post_processing_recipe(tmp_path, model_type: str):
    """The tiny recipe on an architecture whose forward changes the logits after the head."""
    configs = {"granite": "model_type: granite, logits_scaling: 4.0",  # logits / 4
               "gemma2": "model_type: gemma2, head_dim: 32, final_logit_softcapping: 2.0"}  # 2 tanh(logits / 2)
    path = tiny_recipe(tmp_path)
    path.write_text(path.read_text().replace("model_type: llama", configs[model_type]))
    return path


@pytest.mark.parametrize("model_type", ["granite", "gemma2"])
def test_a_model_that_changes_its_logits_after_the_head_is_not_fused_and_still_exact(tmp_path, model_type):
    eager = ["model.attn_implementation=eager"] if model_type == "gemma2" else []  # gemma2 has no sdpa attention
    trainer = _trainer(_post_processing_recipe(tmp_path, model_type), ["data.packing=true", *eager], tmp_path)
    trainer.model.train()
    field = {"granite": "logits_scaling", "gemma2": "final_logit_softcapping"}[model_type]
    assert field in labelled_head.fused_path_reason(trainer.model)
    _assert_same(trainer, fused_expected=False)  # the fused setting falls back to the unfused labelled head


def test_logits_changed_after_the_head_unforeseen_are_an_error_not_another_loss(tmp_path, monkeypatch):
    """What the config check cannot see: Granite with its logits_scaling unlisted, and a forward hook
    that scales the head's output. The loss function sees logits that are not the head's own output and
    raises, naming the model, rather than return the loss of unscaled logits."""
    trainer = _trainer(_post_processing_recipe(tmp_path, "granite"), ["data.packing=false"], tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    monkeypatch.setattr(labelled_head, "LOGIT_POSTPROCESSING", ())
    trainer.model.train()
    assert labelled_head.fused_path_reason(trainer.model) is None
    with pytest.raises(RuntimeError, match="GraniteForCausalLM changed its logits between its output head and its loss"):
        trainer.compute_loss(trainer.model, dict(batch))

    trainer = _trainer(tiny_recipe(tmp_path), ["data.packing=false"], tmp_path)
    trainer.model.train()
    head = trainer.model.get_base_model().get_output_embeddings()
    handle = head.register_forward_hook(lambda _module, _args, logits: logits * 2)
    try:
        with pytest.raises(RuntimeError, match="LlamaForCausalLM changed its logits"):
            trainer.compute_loss(trainer.model, dict(batch))
    finally:
        handle.remove()
    # the model's own loss function is back after the error, and the fused path runs again without the hook
    assert "_loss_function" not in trainer.model.get_base_model().__dict__
    assert float(trainer.compute_loss(trainer.model, dict(batch)).detach()) > 0


def test_a_micro_batch_with_no_target_has_loss_0_through_the_fused_loss(tmp_path):
    """Every label masked (a response cut away by max_length): 0 targets, the Trainer's count clamped to 1,
    a loss of 0 and zero gradients rather than 0/0; the micro-batch beside it trains as on the full path."""
    trainer = _trainer(tiny_recipe(tmp_path), ["data.packing=true"], tmp_path)
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    model = trainer.model
    model.train()
    batches, num_items = trainer.get_batch_samples(iter(trainer.get_train_dataloader()), 2, trainer.args.device)
    empty = {**batches[0], "labels": torch.full_like(batches[0]["labels"], IGNORE_INDEX)}
    assert labelled_head.fused_path_reason(model) is None
    seen, handle = _rows_the_head_saw(trainer)
    try:
        model.zero_grad()
        assert float(trainer.training_step(model, dict(empty), torch.tensor(0))) == 0.0
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert len(grads) >= 6 and all(g is not None and torch.equal(g, torch.zeros_like(g)) for g in grads)
        fused = float(trainer.training_step(model, dict(batches[1]), num_items))
    finally:
        handle.remove()
    assert seen == [0, 0]  # both through the fused loss
    trainer.head_only_where_loss = False
    model.zero_grad()
    assert fused == pytest.approx(float(trainer.training_step(model, dict(batches[1]), num_items)), rel=1e-5)


def test_under_bfloat16_autocast_the_fused_products_run_in_bfloat16_as_the_heads_do(tmp_path):
    """Mixed precision (a GPU run's bf16): the Trainer's step under autocast, as accelerate runs the forward.
    The fused products run in bfloat16 like the plain head's, on the logits' gradient already divided by the
    token count as the plain backward divides it, so bfloat16 rounds the same numbers: the loss and every
    gradient equal the full and unfused paths' to float32 rounding (measured: bitwise equal gradients),
    where the products in float32 would differ by about 2% (checked below, so the tolerance means something)."""
    trainer = _trainer(tiny_recipe(tmp_path), ["data.packing=true"], tmp_path)
    results = {}
    for path in PATHS:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results[path] = _step(trainer, path)
    assert results["fused"][2] == [0, 0]  # the fused path was taken

    def largest_difference(grads, reference):
        return max(float((grads[n] - g).norm() / g.norm()) for n, g in reference.items())

    full_losses, full_grads = results["full"][:2]
    for path in PATHS[1:]:
        losses, grads = results[path][:2]
        assert losses == pytest.approx(full_losses, rel=1e-5), path
        assert largest_difference(grads, full_grads) < 1e-5, path
    float32_losses, float32_grads = _step(trainer, "fused")[:2]  # no autocast: the products in float32
    assert float32_losses != pytest.approx(full_losses, rel=1e-5)
    assert largest_difference(float32_grads, full_grads) > 1e-3


def test_float16_mixed_precision_from_accelerates_environment_keeps_the_unfused_head(tmp_path, monkeypatch):
    """ACCELERATE_MIXED_PRECISION=fp16 (what `accelerate launch --mixed_precision fp16` or an accelerate config
    exports) makes the Trainer's accelerator run float16 autocast with a loss scaler on a GPU while
    TrainingArguments.fp16 stays False: the fused gradient would be rounded to float16 before the scale reaches
    it, so the head must stay unfused there as under fp16 itself."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    trainer = _trainer(tiny_recipe(tmp_path), ["data.packing=false"], tmp_path)
    assert not trainer.args.fp16 and trainer.accelerator.mixed_precision == "fp16"
    _, _, seen, batches = _step(trainer, "fused")
    assert seen == [_targets(b, False) for b in batches]  # the unfused head at the labelled rows, not 0 rows
