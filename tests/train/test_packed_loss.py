"""Packing changes how examples are batched, never what they train on: through the real data
preparation, the real collators and the Trainer's own loss (its token count and compute_loss), the
same examples packed and unpacked give the same summed loss over the same number of target tokens,
for a tokenizer that adds BOS (the byte tokenizer) and one that adds none (../shared/data's tiny_bpe,
as Qwen2.5 and GPT-NeoX add none), training on the inputs or not."""

from __future__ import annotations

import functools

import pytest
import torch

from qlorafx.data.build import prepare
from qlorafx.data.collate import COLLATORS, IGNORE_INDEX, collator_for
from qlorafx.recipe.schema import Recipe
from qlorafx.train.optimizers import OPTIMIZERS
from qlorafx.train.trainers import TRAINERS
from tests.train.tiny import QUICKSTART_DATA


def _recipe(tmp_path, packing: bool, train_on_inputs: bool, fmt: str, data=QUICKSTART_DATA) -> Recipe:
    return Recipe.model_validate({
        "model": {"loader": "from_config", "config": {"model_type": "llama"}},
        "data": {"datasets": [{"path": str(data), "format": fmt, "max_examples": 24}],
                 "max_length": 512, "val_size": 0, "packing": packing, "train_on_inputs": train_on_inputs},
        "optimizer": {"name": "adamw"},
        "training": {"micro_batch_size": 4, "max_steps": 1},
        "output_dir": str(tmp_path / "run"),
    })


def _model(vocab_size: int, attn: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=512)
    model = LlamaForCausalLM(config).eval()
    # set after init: init checks that the flash-attn package is installed, which it is not on CPU
    model.config._attn_implementation = attn
    return model


def trainer_loss(tmp_path, tokenizer, model, packing: bool, train_on_inputs: bool, fmt: str = "alpaca",
                 attn: str = "sdpa", data=QUICKSTART_DATA):
    """(summed loss, target tokens, prepared data) over every batch of the prepared training data,
    as the Trainer computes them: its count of the batch's targets, and compute_loss's mean over
    that count."""
    recipe = _recipe(tmp_path / f"p{packing}", packing, train_on_inputs, fmt, data)
    prepared = prepare(recipe, tokenizer, log=lambda *_: None)
    collator = COLLATORS.get(collator_for(recipe, encoder_decoder=False))(tokenizer.pad_token_id, attn)
    trainer = TRAINERS.get("causal_lm")(recipe, model, tokenizer, prepared, collator=collator,
                                        optimizer=OPTIMIZERS.get("adamw")(recipe.optimizer), callbacks=[],
                                        run_dir=tmp_path / f"p{packing}")
    total, targets = torch.tensor(0.0, dtype=torch.float64), 0
    with torch.no_grad():
        for batch in trainer.get_train_dataloader():
            _, count = trainer.get_batch_samples(iter([batch]), 1, trainer.args.device)
            loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=count)
            total += loss.double() * count
            targets += int(count)
    return total.item(), targets, prepared


def _tiny_bpe(shared_data):
    """A BPE tokenizer that adds no BOS; its <|endoftext|> made EOS (and pad), as Qwen2.5's is."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(shared_data / "tokenizers" / "tiny_bpe"))
    tokenizer.eos_token = tokenizer.pad_token = "<|endoftext|>"
    assert tokenizer("Hi")["input_ids"][0] != tokenizer.bos_token_id  # no BOS: the first token is text
    return tokenizer


@pytest.mark.parametrize("train_on_inputs", [False, True])
@pytest.mark.parametrize("which", ["byte (BOS)", "tiny_bpe (no BOS)"])
def test_packed_and_unpacked_train_on_the_same_targets(tmp_path, byte_tokenizer, request, which, train_on_inputs):
    tokenizer = byte_tokenizer if which.startswith("byte") else _tiny_bpe(request.getfixturevalue("shared_data"))
    model = _model(len(tokenizer))
    alone, alone_targets, unpacked = trainer_loss(tmp_path, tokenizer, model, False, train_on_inputs)
    packed, packed_targets, rows = trainer_loss(tmp_path, tokenizer, model, True, train_on_inputs)
    assert len(rows.train) < len(unpacked.train)  # several examples did share a row
    # each example alone: every label but the first is a target (the shift drops the first)
    assert alone_targets == sum(sum(label != IGNORE_INDEX for label in e["labels"][1:]) for e in unpacked.train)
    assert packed_targets == alone_targets, (packed_targets, alone_targets)
    assert packed == pytest.approx(alone, rel=1e-5), (packed, alone)



def test_a_chat_template_that_writes_bos_into_the_text(tmp_path):
    """A template that writes BOS as text (as Llama 2's and Llama 3's do): the tokenizer adds none of its
    own, the BOS is text, and with train_on_inputs it carries a label like any other token."""
    import json

    from qlorafx.model.byte_tokenizer import byte_tokenizer

    tokenizer = byte_tokenizer()
    tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
                               "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    data = tmp_path / "chat.jsonl"
    records = [json.loads(line) for line in QUICKSTART_DATA.read_text().splitlines()]
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": r["instruction"]},
                                                     {"role": "assistant", "content": r["output"]}]}) + "\n"
                            for r in records))
    model = _model(len(tokenizer))
    alone, alone_targets, unpacked = trainer_loss(tmp_path, tokenizer, model, False, True, "chat", data=data)
    packed, packed_targets, _ = trainer_loss(tmp_path, tokenizer, model, True, True, "chat", data=data)
    assert unpacked.train[0]["labels"][0] == tokenizer.bos_token_id  # the BOS in the text is a labelled token
    assert packed_targets == alone_targets, (packed_targets, alone_targets)
    assert packed == pytest.approx(alone, rel=1e-5), (packed, alone)


# flash-attn's two kernels, with its signatures and layouts, computed on CPU: what transformers' own
# flash-attention integration calls (modeling_flash_attention_utils._flash_attention_forward)
def _attend(q, k, v, softmax_scale, causal):  # (seq, heads, dim) each
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=causal, scale=softmax_scale, enable_gqa=True)
    return out.transpose(0, 1)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    deterministic=False):
    """(batch, seq, heads, dim): every row attends within itself."""
    return torch.stack([_attend(q[b], k[b], v[b], softmax_scale, causal) for b in range(q.shape[0])])


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, deterministic=False):
    """(total, heads, dim), sequences given by their cumulative lengths: none attends to another."""
    assert cu_seqlens_q.dtype == torch.int32 and torch.equal(cu_seqlens_q, cu_seqlens_k)
    bounds = cu_seqlens_q.tolist()
    assert max(b - a for a, b in zip(bounds, bounds[1:])) == max_seqlen_q == max_seqlen_k
    return torch.cat([_attend(q[a:b], k[a:b], v[a:b], softmax_scale, causal) for a, b in zip(bounds, bounds[1:])])


@pytest.fixture
def flash_attention_on_cpu(monkeypatch):
    """transformers' flash_attention_2 integration, unchanged, over the CPU kernels above: it decides
    from what the model is handed (a padding mask, cu_seq_lens, one row of restarting positions, or
    none of these) whether examples stay apart, exactly as it does over the real kernels on a GPU."""
    from transformers import modeling_flash_attention_utils as fa

    calls = []

    def recorded(kernel):
        @functools.wraps(kernel)  # transformers reads the kernel's signature to know what it accepts
        def call(*args, **kwargs):
            calls.append(kernel.__name__)
            return kernel(*args, **kwargs)
        return call

    kernels = (recorded(flash_attn_func), recorded(flash_attn_varlen_func), None, fa._pad_input, fa._unpad_input)
    monkeypatch.setattr(fa, "_lazy_imports", lambda *args, **kwargs: kernels)
    monkeypatch.setattr(fa, "_loaded_implementation", None)
    yield calls
    monkeypatch.setattr(fa, "_loaded_implementation", None)


def test_flash_attention_2_trains_packed_examples_apart(tmp_path, byte_tokenizer, flash_attention_on_cpu):
    """What the packed collator hands flash_attention_2, through the Trainer and transformers' flash
    integration into every attention layer: the summed loss and target count are those of the
    examples alone (over the real kernel on a GPU: bench/gpu_fa2_packing.py)."""
    alone, alone_targets, _ = trainer_loss(tmp_path, byte_tokenizer, _model(len(byte_tokenizer)), False, True)
    flash = _model(len(byte_tokenizer), "flash_attention_2")
    packed, packed_targets, _ = trainer_loss(tmp_path, byte_tokenizer, flash, True, True, attn="flash_attention_2")
    assert packed_targets == alone_targets
    assert packed == pytest.approx(alone, rel=1e-5), (packed, alone)
    assert set(flash_attention_on_cpu) == {"flash_attn_varlen_func"}  # the kernel that keeps sequences apart


@pytest.mark.parametrize("head_only_where_loss", [True, False], ids=["labelled-head", "full-head"])
def test_evaluation_counts_a_flattened_micro_batch_per_dataset_row(tmp_path, byte_tokenizer, flash_attention_on_cpu,
                                                                   monkeypatch, head_only_where_loss):
    """Across processes, the evaluation drops the rows a process repeats to even out its last batch through
    accelerate's gather_for_metrics, which cuts the gathered rows at the split's remainder, counted in dataset
    rows. Under flash_attention_2 a micro-batch of 4 packed rows is ONE flattened row: handed over as one, the
    cut kept a process's repeated rows (or dropped its own). Through Trainer.evaluate, each dataset row's loss
    sum and target count must be handed over, equal to those of the same rows batched for sdpa."""
    recipe = _recipe(tmp_path, packing=True, train_on_inputs=True, fmt="alpaca")
    prepared = prepare(recipe, byte_tokenizer, log=lambda *_: None)
    handed, metrics = {}, {}
    for attn in ("sdpa", "flash_attention_2"):
        model = _model(len(byte_tokenizer), attn)
        trainer = TRAINERS.get("causal_lm")(recipe, model, byte_tokenizer, prepared,
                                            collator=COLLATORS.get("packed")(byte_tokenizer.pad_token_id, attn),
                                            optimizer=OPTIMIZERS.get("adamw")(recipe.optimizer), callbacks=[],
                                            run_dir=tmp_path / attn)
        trainer.head_only_where_loss = head_only_where_loss
        gather, calls = trainer.accelerator.gather_for_metrics, []
        monkeypatch.setattr(trainer.accelerator, "gather_for_metrics",
                            lambda data, *a, **k: calls.append(data) or gather(data, *a, **k))
        metrics[attn] = trainer.evaluate(eval_dataset=prepared.train)["eval_loss"]
        handed[attn] = torch.cat([c for c in calls if c.dtype == torch.float64 and c.shape[-1:] == (2,)])
    rows = len(prepared.train)
    assert rows > 4  # more than one micro-batch
    assert handed["flash_attention_2"].shape == handed["sdpa"].shape == (rows, 2)
    assert handed["flash_attention_2"][:, 1].tolist() == handed["sdpa"][:, 1].tolist()  # targets, row by row
    assert torch.allclose(handed["flash_attention_2"][:, 0], handed["sdpa"][:, 0], rtol=1e-5)
    assert metrics["flash_attention_2"] == pytest.approx(metrics["sdpa"], rel=1e-5)
    assert "flash_attn_varlen_func" in flash_attention_on_cpu
