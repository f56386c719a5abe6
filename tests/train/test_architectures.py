"""Causal LMs of several families, built locally from configs (loader from_config), each trained a
few steps with 4-bit NF4 LoRA on all linear layers through the real pipeline: the loss falls, and
all-linear wraps every linear layer but never the output head (whatever the family calls it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from qlorafx.data.collate import PACKED_SDPA
from qlorafx.model import packed_attention
from qlorafx.model.adapter import linear_layer_names
from qlorafx.recipe.load import load_recipe
from qlorafx.finetune import train
from tests.train.tiny import tiny_recipe

COMMON = "hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 2, " \
         "max_position_embeddings: 512, initializer_range: 0.1"
FAMILIES = {
    # family: (model.config fields, the output head's module name)
    "llama": (f"{{model_type: llama, {COMMON}, num_key_value_heads: 2}}", "lm_head"),
    # grouped-query attention and a tied head, as Qwen2-0.5B has
    "qwen2": (f"{{model_type: qwen2, {COMMON}, num_key_value_heads: 1, tie_word_embeddings: true}}", "lm_head"),
    # fused query_key_value projection, partial rotary, parallel residual (the head was embed_out
    # before transformers 5)
    "gpt_neox": (f"{{model_type: gpt_neox, {COMMON}}}", "lm_head"),
    # partial rotary, a biased head, LayerNorm
    "phi": (f"{{model_type: phi, {COMMON}}}", "lm_head"),
}
OVERRIDES = ["lora.target_modules=all-linear", "quantization.bits=4", "quantization.quant_type=nf4",
             "training.max_steps=12", "logging.every=4", "logging.backends=[jsonl]", "logging.sample_max_new_tokens=0"]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_in_4bit_with_all_linear_lora(family, tmp_path):
    import bitsandbytes as bnb

    config, head_name = FAMILIES[family]
    loaded = load_recipe(tiny_recipe(tmp_path), [f"model.config={config}", *OVERRIDES])
    result = train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    model = result.model
    base = model.get_base_model()
    assert base.config.model_type == family
    assert base.config._attn_implementation == PACKED_SDPA  # packed rows attended per example, in every family

    # the loss falls: train logs and the evaluation before and after
    records = [json.loads(line) for line in (Path(loaded.recipe.output_dir) / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 3 and losses[-1] < 0.9 * losses[0], losses
    summary = result.summary
    assert summary.eval_loss_after < 0.9 * summary.eval_loss_before, (summary.eval_loss_before, summary.eval_loss_after)

    # the base is really 4-bit, the head is not, and all-linear wrapped every linear layer but the head
    head = base.get_output_embeddings()
    assert dict(base.named_modules())[head_name] is head
    assert not isinstance(head, bnb.nn.Linear4bit) and not hasattr(head, "lora_A")
    wrapped = {name.removeprefix("base_model.model.") for name, module in model.named_modules()
               if hasattr(module, "lora_A") and isinstance(module.base_layer, bnb.nn.Linear4bit)}
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        fresh = AutoModelForCausalLM.from_config(base.config)
    linear = set(linear_layer_names(fresh))
    assert wrapped == linear and head_name not in wrapped and len(wrapped) >= 8
    # and the saved adapter names no head either
    saved = json.loads((Path(loaded.recipe.output_dir) / "adapter" / "adapter_config.json").read_text())
    assert saved["target_modules"] and head_name not in saved["target_modules"]
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)

    # left-padded batched generation gives each prompt what it gets alone, in this family too
    from qlorafx.infer.generate import Generator, Sampling, generate_ids
    from qlorafx.report.run import trained_run

    generator = Generator(trained_run(loaded.recipe.output_dir), Sampling(max_new_tokens=6), result.tokenizer,
                          model.eval())
    ids = [generator.encode(p).ids for p in ("Hi", "What sound does a cow make?", "Name a color.")]
    stop, pad = generator.prompter.stop_ids, result.tokenizer.pad_token_id
    batched = generate_ids(model, ids, pad, stop, generator.sampling)
    assert batched == [generate_ids(model, [one], pad, stop, generator.sampling)[0] for one in ids]


@pytest.mark.parametrize("attn", ["sdpa", "eager", PACKED_SDPA])
@pytest.mark.parametrize("family", FAMILIES)
def test_packed_examples_stay_apart_in_each_family(family, attn):
    """The packed collator's 4D block-diagonal mask and restarting positions work in every family, and so
    does attention per example (one flattened row with the boundaries): each example in a packed row gets
    the logits it gets alone."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from qlorafx.data.collate import COLLATORS, NUM_TOKENS, ROW_TOKENS

    packed_attention.register()

    fields = yaml.safe_load(FAMILIES[family][0])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(vocab_size=259, **fields),
                                             attn_implementation=attn).eval()
    first, second = torch.randint(0, 256, (13,)).tolist(), torch.randint(0, 256, (9,)).tolist()
    row = {"input_ids": first + second, "labels": first + second, "lengths": [len(first), len(second)]}
    batch = COLLATORS.get("packed")(0, attn)([row])
    del batch[NUM_TOKENS], batch["labels"]
    batch.pop(ROW_TOKENS, None)
    with torch.no_grad():
        packed = model(**batch).logits[0]
        alone = [model(input_ids=torch.tensor([ids])).logits[0] for ids in (first, second)]
    assert torch.allclose(packed[:len(first)], alone[0], atol=1e-4)
    assert torch.allclose(packed[len(first):], alone[1], atol=1e-4)
