"""What every set-up shares: data, tokenizer, model weights, LoRA, optimizer, and the measurements.

The reference set-up of issue 15 (the table there compares axolotl and LLaMA-Factory on it): one
epoch over the first 400 Alpaca examples, a Llama of 4 layers, hidden 256 (intermediate 688, Llama's
8/3 ratio; 4 heads), vocabulary 32,000 with the shared LLaMA-2 tokenizer, random weights from one
seed, stored in 4-bit NF4 with double quantization, LoRA r=16 alpha=32 on all linear layers, float32
compute, max length 512, batch 8, AdamW at lr 1e-3 (constant). The held-out loss is measured the
same way for all: mean response-token loss on the next 64 examples, before the first step and at a
quarter, half, three quarters and the end of the epoch, with the training clock paused.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ALPACA = SHARED / "alpaca" / "alpaca_5000.json"
LLAMA2 = SHARED / "tokenizers" / "llama2"
# BENCH_EXAMPLES shrinks the run for a quick check of the bench itself (its figures then mean nothing)
TRAIN = int(os.environ.get("BENCH_EXAMPLES", 400))
HELD_OUT = min(64, TRAIN)
MAX_LENGTH = 512
EXAMPLES_PER_STEP = 8
LR, SEED = 1e-3, 0
MODEL = dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024, initializer_range=0.1)
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
EVAL_POINTS = 4  # held-out evaluations per epoch


def finetune_module():
    """qlorafx's finetune module: qlorafx.finetune, or qlorafx.train.pipeline in checkouts from before
    it moved (af74e2b), which --compare-src may run."""
    import importlib
    import importlib.util

    name = "qlorafx.finetune" if importlib.util.find_spec("qlorafx.finetune") else "qlorafx.train.pipeline"
    return importlib.import_module(name)


def records() -> tuple[list[dict], list[dict]]:
    data = json.loads(ALPACA.read_text())
    return data[:TRAIN], data[TRAIN:TRAIN + HELD_OUT]


def prepare_base(folder: Path) -> Path:
    """The shared base: random weights from MODEL (seeded) with the LLaMA-2 tokenizer, saved once."""
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaTokenizer

    base = folder / "base"
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
    """The 4-bit base with LoRA, as each baseline starts."""
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


def held_out_loss(model, tokenizer, held_out: list[dict], batch_size: int = 8) -> float:
    """Mean loss over the response tokens (and EOS) of the held-out examples: right-padded batches,
    full logits, one cross-entropy sum (independent of the code being measured)."""
    from qlorafx.data.collate import COLLATORS
    from qlorafx.data.formats import FORMATS
    from qlorafx.data.render import render_text
    from qlorafx.data.tokenize import tokenize

    examples = []
    for record in held_out:
        [turns] = FORMATS.get("alpaca").conversations(record)
        examples.append(tokenize(render_text(turns, tokenizer.eos_token), tokenizer, MAX_LENGTH, train_on_inputs=False))
    pad = COLLATORS.get("pad_to_longest")(tokenizer.pad_token_id or 0)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = pad([e.as_features() for e in examples[start:start + batch_size]])
            labels = batch["labels"][:, 1:]
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                       ignore_index=-100, reduction="sum").item()
            count += int((labels != -100).sum())
    model.train(was_training)
    return total / count


def clock(held_out: list[dict], process_started: float):
    """A TrainerCallback that times the training loop (first step begun to the epoch's end) with
    the held-out evaluations paused out of it, and records the loss curve against that clock."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.curve: list[tuple[float, int, float]] = []  # (train seconds, step, held-out loss)
            self.started = self.first_step_at = None
            self.cpu_started = 0.0
            self.paused = self.cpu_paused = self.train_cpu_seconds = 0.0
            self.eval_every = 1

        def on_train_begin(self, args, state, control, **kwargs):
            self.eval_every = max(1, -(-state.max_steps // EVAL_POINTS))

        def on_step_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
            if self.started is None:
                self.first_step_at = time.perf_counter() - process_started
                self.curve.append((0.0, 0, held_out_loss(model, processing_class, held_out)))
                self.started, self.cpu_started = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
            if state.global_step % self.eval_every == 0 or state.global_step == state.max_steps:
                now, cpu = time.perf_counter(), time.process_time()
                self.train_cpu_seconds = cpu - self.cpu_started - self.cpu_paused
                loss = held_out_loss(model, processing_class, held_out)
                self.curve.append((now - self.started - self.paused, state.global_step, loss))
                self.paused += time.perf_counter() - now
                self.cpu_paused += time.process_time() - cpu

        @property
        def train_seconds(self) -> float:
            return self.curve[-1][0]

    return Clock()


def loss_tokens(features) -> int:
    """Targets that carry loss, as a causal LM's loss counts them (labels after the shift)."""
    return sum(sum(1 for label in f["labels"][1:] if label != -100) for f in features)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def threads() -> int:
    """torch's own default (one thread per physical core), as each system runs by default and as
    issue 15's reference table was measured; BENCH_THREADS=N to set another. Returns the count."""
    if os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    return torch.get_num_threads()
