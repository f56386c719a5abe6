"""Attention per packed example (model/packed_attention.py) computes what sdpa over the block-diagonal
mask computes: through the real collators and the Trainer's own loss, the same packed rows give the same
loss and the same gradient on every parameter; each example is attended alone; a model that loses the
boundaries is refused, not trained across examples."""

from __future__ import annotations

import pytest
import torch

from qlorafx.data.build import prepare
from qlorafx.data.collate import COLLATORS, NUM_TOKENS, PACKED_SDPA, ROW_TOKENS
from qlorafx.model import packed_attention
from qlorafx.model.adapter import CHECKPOINTING
from qlorafx.recipe.schema import Recipe
from qlorafx.train.optimizers import OPTIMIZERS
from qlorafx.train.trainers import TRAINERS
from tests.train.tiny import QUICKSTART_DATA


def _recipe(tmp_path, attn: str = "sdpa", **data) -> Recipe:
    return Recipe.model_validate({
        "model": {"loader": "from_config", "config": {"model_type": "llama"}, "attn_implementation": attn},
        "data": {"datasets": [{"path": str(QUICKSTART_DATA), "format": "alpaca", "max_examples": 24}],
                 "max_length": 512, "val_size": 0, "packing": True, **data},
        "optimizer": {"name": "adamw"},
        "training": {"micro_batch_size": 4, "max_steps": 1},
        "output_dir": str(tmp_path / "run"),
    })


def _model(vocab_size: int, kv_heads: int = 2, **config):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=kv_heads, vocab_size=vocab_size, max_position_embeddings=512, **config)
    return LlamaForCausalLM(config).train()  # train mode: the path training takes (Llama's dropout is 0)


def _losses_and_grads(tmp_path, tokenizer, model, attention: str):
    """Per batch: the Trainer's loss (its compute_loss over its own target count) and every parameter's gradient."""
    recipe = _recipe(tmp_path / attention)
    prepared = prepare(recipe, tokenizer, log=lambda *_: None)
    collator = COLLATORS.get("packed")(tokenizer.pad_token_id, attention)
    trainer = TRAINERS.get("causal_lm")(recipe, model, tokenizer, prepared, collator=collator,
                                        optimizer=OPTIMIZERS.get("adamw")(recipe.optimizer), callbacks=[],
                                        run_dir=tmp_path / attention)
    out = []
    for batch in trainer.get_train_dataloader():
        model.zero_grad()
        _, count = trainer.get_batch_samples(iter([batch]), 1, trainer.args.device)
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=count)
        loss.backward()
        out.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    return out


@pytest.mark.parametrize("kv_heads, checkpointing", [(4, False), (1, False), (4, True)],
                         ids=["multi-head", "grouped-query", "gradient-checkpointing"])
def test_attention_per_example_equals_the_block_diagonal_mask(tmp_path, byte_tokenizer, kv_heads, checkpointing,
                                                              monkeypatch):
    model = _model(len(byte_tokenizer), kv_heads)
    if checkpointing:  # the layers run again in backward: the boundaries must reach them there too
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=CHECKPOINTING)  # as the pipeline does
    masked = _losses_and_grads(tmp_path, byte_tokenizer, model, "sdpa")

    packed_attention.register()
    model.set_attn_implementation(PACKED_SDPA)
    from transformers.integrations import sdpa_attention

    lengths = []  # the query lengths transformers' own sdpa function is called with, per packed example
    real = sdpa_attention.sdpa_attention_forward
    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward",
                        lambda module, q, *a, **kw: lengths.append(q.shape[2]) or real(module, q, *a, **kw))
    per_example = _losses_and_grads(tmp_path, byte_tokenizer, model, PACKED_SDPA)

    assert len(per_example) == len(masked) > 1
    for (loss_a, grads_a), (loss_b, grads_b) in zip(masked, per_example):
        assert loss_b == pytest.approx(loss_a, rel=1e-6)
        for name, grad in grads_a.items():
            torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # each call attended one example, never a row: the examples' lengths, every layer, every batch
    prepared = prepare(_recipe(tmp_path / "again"), byte_tokenizer, log=lambda *_: None)
    examples = [length for row in prepared.train for length in row["lengths"]]
    runs = 2 if checkpointing else 1  # forward, and the recomputation in backward
    assert sorted(lengths) == sorted(examples * model.config.num_hidden_layers * runs)
    assert len(examples) > len(prepared.train)  # rows held several examples: the calls were not per row


def _tiny(model_type: str, vocab_size: int, **fields):
    """A 2-layer model of another family, random weights, built from its config class."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                  max_position_embeddings=512, pad_token_id=0, **fields)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")


def test_a_model_that_drops_the_boundaries_attends_per_example_from_the_positions(byte_tokenizer):
    """Nemotron's decoder layer hands its attention the positions but not the other keyword arguments (the
    boundaries among them): the boundaries are then read from where the positions restart, as transformers' flash
    attention reads them, and each example gets the logits it gets alone (this model was refused at its first step)."""
    model = _tiny("nemotron", len(byte_tokenizer)).eval()
    packed_attention.register()
    assert packed_attention.unsupported_reason(model, _recipe_for(model)) is None
    model.set_attn_implementation(PACKED_SDPA)
    first, second, third = [5, 6, 7, 8, 9], [10, 11, 12], [13]
    rows = [{"input_ids": first + second, "labels": first + second, "lengths": [5, 3]},
            {"input_ids": third, "labels": third, "lengths": [1]}]
    batch = COLLATORS.get("packed")(0, PACKED_SDPA)(rows)
    for name in (NUM_TOKENS, ROW_TOKENS, "labels"):
        batch.pop(name)
    with torch.no_grad():
        packed = model(**batch).logits[0]
        model.set_attn_implementation("sdpa")
        alone = torch.cat([model(input_ids=torch.tensor([ids])).logits[0] for ids in (first, second, third)])
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)


def test_packed_rows_without_boundaries_that_cannot_be_read_are_refused(byte_tokenizer):
    """Two rows whose positions restart, with no mask and no boundaries: one row's boundaries are not the other's,
    and attended causally as they are, the examples would see each other."""
    model = _model(len(byte_tokenizer))
    packed_attention.register()
    model.set_attn_implementation(PACKED_SDPA)
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, -100, 9], "lengths": [3, 2]}]
    batch = COLLATORS.get("packed")(0, PACKED_SDPA)(rows)
    assert batch["input_ids"].shape == (1, 5) and batch["cu_seq_lens_q"].tolist() == [0, 3, 5]
    with_bounds = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                        attention_mask=batch["attention_mask"], cu_seq_lens_q=batch["cu_seq_lens_q"],
                        cu_seq_lens_k=batch["cu_seq_lens_k"]).logits
    from_positions = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
    torch.testing.assert_close(from_positions, with_bounds)
    with pytest.raises(RuntimeError, match="reached attention without its boundaries"):
        model(input_ids=batch["input_ids"].repeat(2, 1), position_ids=batch["position_ids"].repeat(2, 1))


def test_without_boundaries_the_examples_would_see_each_other(byte_tokenizer):
    """The equality above is not trivial: the same flattened row attended as one sequence gives other logits."""
    model = _model(len(byte_tokenizer)).eval()
    packed_attention.register()
    model.set_attn_implementation(PACKED_SDPA)
    rows = [{"input_ids": [5, 6, 7, 8, 9, 10], "labels": [-100] * 6, "lengths": [3, 3]}]
    batch = COLLATORS.get("packed")(0, PACKED_SDPA)(rows)
    with torch.no_grad():
        apart = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                      cu_seq_lens_q=batch["cu_seq_lens_q"], cu_seq_lens_k=batch["cu_seq_lens_k"]).logits
        second_alone = model(input_ids=torch.tensor([[8, 9, 10]])).logits
        model.set_attn_implementation("sdpa")
        together = model(input_ids=batch["input_ids"]).logits
    torch.testing.assert_close(apart[:, 3:], second_alone, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(together[:, 3:], second_alone, atol=1e-3)


def test_generation_and_padded_batches_go_to_sdpa_unchanged(byte_tokenizer):
    model = _model(len(byte_tokenizer)).eval()
    ids = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits
        packed_attention.register()
        model.set_attn_implementation(PACKED_SDPA)
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, plain)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
        model.set_attn_implementation("sdpa")
        assert torch.equal(model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False), out)


@pytest.mark.parametrize("change, reason", [
    ({"data": {"packing": False}}, "the data is not packed"),
    ({"model": {"attn_implementation": "eager"}}, "model.attn_implementation is eager, not sdpa"),
    ({"config": {"attention_dropout": 0.1}}, "applies dropout to its attention weights"),
    ({"config": {"sliding_window": 128}}, "sliding window (128) is shorter than data.max_length (512)"),
])
def test_where_the_block_diagonal_mask_stays(tmp_path, byte_tokenizer, change, reason):
    recipe = _recipe(tmp_path, change.get("model", {}).get("attn_implementation", "sdpa"), **change.get("data", {}))
    model = _model(len(byte_tokenizer), **change.get("config", {}))
    assert reason in packed_attention.unsupported_reason(model, recipe)
    logged = []
    assert packed_attention.use_for_packed_rows(model, recipe, logged.append) == recipe.model.attn_implementation
    assert model.config._attn_implementation == "sdpa"


def _recipe_for(model, tmp_path="/nonexistent") -> Recipe:
    from pathlib import Path

    return _recipe(Path(tmp_path))


@pytest.mark.parametrize("model_type, fields, reason", [
    # GPT-2's attention dropout is attn_pdrop (0.1 by default), BERT's attention_probs_dropout_prob
    ("gpt2", {}, "applies dropout to its attention weights"),
    ("bert", {"is_decoder": True}, "applies dropout to its attention weights"),
    # linear-attention layers carry a state along the row: from one example into the next, whatever the attention
    ("minimax", {"layer_types": ["linear_attention", "full_attention"]}, "linear_attention layers"),
])
def test_other_families_that_keep_the_block_diagonal_mask(byte_tokenizer, model_type, fields, reason):
    model = _tiny(model_type, len(byte_tokenizer), **fields)
    recipe = _recipe_for(model)
    assert reason in (packed_attention.unsupported_reason(model, recipe) or "")
    assert packed_attention.use_for_packed_rows(model, recipe, lambda *_: None) == "sdpa"
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("window, kept", [(4 * 64 + 1, None), (4 * 64, "sliding window (256) is no longer than")],
                         ids=["window-holds-the-flattened-row", "window-shorter-than-the-flattened-row"])
def test_no_mask_is_built_over_the_flattened_row(tmp_path, byte_tokenizer, monkeypatch, window, kept):
    """Mistral's layers all slide. Once the flattened micro-batch (micro_batch_size x max_length tokens) reaches the
    window, transformers builds its sliding mask over the whole row, (b s)^2 values that attention per example never
    reads (b times the block-diagonal masks' b s^2; 4 GiB at 16 x 4096 under Mistral's window of 4096), where the
    estimate counts none: such a run keeps the block-diagonal mask. Under the window, no mask is built at all."""
    from transformers import MistralConfig, MistralForCausalLM, masking_utils

    recipe = _recipe(tmp_path)
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"max_length": 64})})
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(byte_tokenizer), sliding_window=window)).train()
    reason = packed_attention.unsupported_reason(model, recipe)
    assert (reason is None) if kept is None else (kept in (reason or ""))
    attention = packed_attention.use_for_packed_rows(model, recipe, lambda *_: None)
    built = []  # the masks transformers builds for the forward below
    for name in ("sdpa", PACKED_SDPA):
        real = masking_utils.ALL_MASK_ATTENTION_FUNCTIONS[name]
        monkeypatch.setitem(masking_utils.ALL_MASK_ATTENTION_FUNCTIONS._global_mapping, name,
                            lambda *a, real=real, **kw: built.append(real(*a, **kw)) or built[-1])
    ids = list(range(5, 65))  # four rows of two 30-token examples: 240 tokens flattened
    batch = COLLATORS.get("packed")(0, attention)([{"input_ids": ids, "labels": ids, "lengths": [30, 30]}] * 4)
    for name in (NUM_TOKENS, ROW_TOKENS):
        batch.pop(name, None)
    model(**batch)
    assert all(mask is None for mask in built)  # the block-diagonal mask comes from the collator, built already


def test_a_composite_model_is_judged_by_its_language_model(tmp_path):
    """A model whose config holds its language model's in a sub-config (Gemma 4's assistant: text_config, with a
    sliding window of 1024) is judged by that one: its top-level config has no sliding window to read."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("gemma4_unified_assistant")
    with torch.device("meta"):  # the class and its config are what is judged; no weight is needed
        model = AutoModelForCausalLM.from_config(config)
    window = config.get_text_config().sliding_window
    assert getattr(config, "sliding_window", None) is None and window < 2048
    recipe = _recipe(tmp_path).model_copy(update={"data": _recipe(tmp_path).data.model_copy(update={"max_length": 2048})})
    assert f"sliding window ({window}) is shorter than data.max_length (2048)" in (
        packed_attention.unsupported_reason(model, recipe) or "")


def test_a_llama_with_packed_data_attends_per_example(tmp_path, byte_tokenizer):
    model = _model(len(byte_tokenizer), sliding_window=None)
    assert packed_attention.use_for_packed_rows(model, _recipe(tmp_path), print) == PACKED_SDPA
    assert model.config._attn_implementation == PACKED_SDPA


def test_the_boundaries_are_read_once_per_forward_not_once_per_layer(byte_tokenizer, monkeypatch):
    """On a GPU each read of the boundaries into Python waits for the device: once per forward, not per layer."""
    model = _model(len(byte_tokenizer))  # 2 layers
    packed_attention.register()
    model.set_attn_implementation(PACKED_SDPA)
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, -100, 9], "lengths": [3, 2]}]
    batch = COLLATORS.get("packed")(0, PACKED_SDPA)(rows)
    # as the Trainer hands them over on a device: queries' and keys' boundaries as two tensors
    bounds_q, bounds_k = batch["cu_seq_lens_q"].clone(), batch["cu_seq_lens_k"].clone()
    reads = []
    real = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: reads.append(t.data_ptr()) or real(t))
    model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=batch["attention_mask"],
          cu_seq_lens_q=bounds_q, cu_seq_lens_k=bounds_k)
    assert sorted(reads) == sorted([bounds_q.data_ptr(), bounds_k.data_ptr()])
