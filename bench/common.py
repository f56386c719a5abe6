"""What the three set-ups share: data, tokenizer, model weights, LoRA, optimizer, and the final eval.

All three train the same tiny Llama-architecture model (same seed, same weights), stored in 4-bit
NF4 with double quantization, with the same LoRA (r=16, alpha=32, all linear layers), AdamW at
lr 1e-3 (constant), for one epoch over the first 1,000 Alpaca examples. The final loss is measured the same
way for all: mean response-token loss on the next 200 examples.
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ALPACA = SHARED / "alpaca" / "alpaca_5000.json"
LLAMA2 = SHARED / "tokenizers" / "llama2"
TRAIN, HELD_OUT = 1000, 200
EXAMPLES_PER_STEP = 8
LR, SEED = 1e-3, 0
MODEL = dict(model_type="llama", hidden_size=128, intermediate_size=384, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024, initializer_range=0.1)
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")


def records() -> tuple[list[dict], list[dict]]:
    data = json.loads(ALPACA.read_text())
    return data[:TRAIN], data[TRAIN:TRAIN + HELD_OUT]


def prepare_base(workdir: Path) -> Path:
    """The shared base: random weights from MODEL (seeded) with the LLaMA-2 tokenizer, saved once."""
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaTokenizer

    base = workdir / "base"
    if (base / "config.json").is_file():
        return base
    tokenizer = LlamaTokenizer.from_pretrained(str(LLAMA2), add_bos_token=True)
    fields = dict(MODEL)
    config = AutoConfig.for_model(fields.pop("model_type"), vocab_size=len(tokenizer), bos_token_id=1, eos_token_id=2, **fields)
    torch.manual_seed(SEED)
    AutoModelForCausalLM.from_config(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    return base


def quantized_lora_model(base: Path):
    """The 4-bit base with LoRA, as each set-up starts."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from qlorafx.model.quantize import keep_weights_trainable_on_cpu

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(base, quantization_config=quant, dtype=torch.float32)
    keep_weights_trainable_on_cpu(model)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    torch.manual_seed(SEED)
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA))


def held_out_loss(model, tokenizer, held_out: list[dict]) -> float:
    """Mean loss over response tokens (and EOS) of the held-out examples, one at a time."""
    from qlorafx.data.formats import FORMATS
    from qlorafx.data.render import render_text
    from qlorafx.data.tokenize import tokenize

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for record in held_out:
            [turns] = FORMATS.get("alpaca").conversations(record)
            example = tokenize(render_text(turns, tokenizer.eos_token), tokenizer, 1024, train_on_inputs=False)
            ids, labels = torch.tensor([example.input_ids]), torch.tensor([example.labels])
            logits = model(input_ids=ids).logits[0, :-1]
            loss = torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=-100, reduction="sum")
            total, count = total + loss.item(), count + int((labels[0, 1:] != -100).sum())
    return total / count


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def threads() -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
