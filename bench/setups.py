"""The three set-ups, each run in its own process (so peak memory is its own): qlorafx, the
qlora.py-style Trainer baseline, and TRL's SFTTrainer with its defaults."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def _tokens_and_padding(batches: list[list[int]]) -> tuple[int, float]:
    real = sum(sum(b) for b in batches)
    padded = sum(max(b) * len(b) for b in batches)
    return real, 1 - real / padded


def _timed(trainer, lengths: list[list[int]], model, tokenizer) -> dict:
    """Train a baseline; wall time, and tokens and padding from the batch lengths its collator saw."""
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    tokens, padding = _tokens_and_padding(lengths)
    return {"wall_s": wall, "tokens": tokens, "padding": padding, "steps": trainer.state.global_step,
            "model": model, "tokenizer": tokenizer}


def run_qlorafx(workdir: Path) -> dict:
    """qlorafx's own pipeline and its default batching (packing into 1,024-token rows). One row
    holds about as many tokens as the baselines' 8 padded examples, so micro_batch_size 1 keeps
    the tokens per optimizer step (and so the number of steps) comparable."""
    import yaml

    from qlorafx.recipe.load import load_recipe
    from qlorafx.finetune import train

    train_records, _ = common.records()
    data = workdir / "train.json"
    data.write_text(json.dumps(train_records))
    recipe_path = workdir / "bench.yaml"
    recipe_path.write_text(yaml.safe_dump({
        "model": {"path": str(common.prepare_base(workdir))},
        "quantization": {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"},
        "lora": {"r": common.LORA["r"], "alpha": common.LORA["lora_alpha"], "dropout": 0.0},
        "data": {"datasets": [{"path": str(data), "format": "alpaca"}], "max_length": 1024},
        "optimizer": {"name": "adamw", "lr": common.LR},
        "scheduler": {"name": "constant"},
        "training": {"epochs": 1, "micro_batch_size": 1, "seed": common.SEED},
        "logging": {"every": 10, "backends": ["jsonl"], "sample_max_new_tokens": 0},
        "output_dir": str(workdir / "run"),
    }))
    loaded = load_recipe(recipe_path)
    started = time.perf_counter()
    result = train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    wall = time.perf_counter() - started
    s = result.summary.data
    return {"wall_s": wall, "tokens": s["tokens"], "padding": s["padding_fraction"], "steps": result.summary.steps,
            "model": result.model, "tokenizer": result.tokenizer}


def _alpaca_features(tokenizer, records: list[dict]) -> list[dict]:
    """qlora.py's tokenization: source and target tokenized separately, source masked."""
    from qlorafx.data.formats.alpaca import PROMPT_NO_INPUT, PROMPT_WITH_INPUT

    features = []
    for r in records:
        source = (PROMPT_WITH_INPUT if r["input"] else PROMPT_NO_INPUT).format(**r)
        s_ids = tokenizer(source, add_special_tokens=False)["input_ids"][:1023]
        t_ids = tokenizer(r["output"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        ids = ([tokenizer.bos_token_id] + s_ids + t_ids)[:1024]
        features.append({"input_ids": ids, "labels": ([-100] * (1 + len(s_ids)) + t_ids)[:1024]})
    return features


def run_trainer_padding(workdir: Path) -> dict:
    """transformers' Trainer, random order, each batch padded to its longest (qlora.py's set-up)."""
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    from qlorafx.data.collate import COLLATORS

    base = common.prepare_base(workdir)
    tokenizer = AutoTokenizer.from_pretrained(base)
    train_records, _ = common.records()
    features = _alpaca_features(tokenizer, train_records)
    pad = COLLATORS.get("pad_to_longest")(0)
    lengths: list[list[int]] = []

    def collate(batch):
        lengths.append([len(f["input_ids"]) for f in batch])
        out = pad(batch)
        out.pop("num_tokens")
        return out

    model = common.quantized_lora_model(base)
    args = TrainingArguments(output_dir=str(workdir / "out"), per_device_train_batch_size=common.EXAMPLES_PER_STEP,
                             num_train_epochs=1, learning_rate=common.LR, lr_scheduler_type="constant",
                             max_grad_norm=0.3, logging_steps=10, save_strategy="no", report_to="none",
                             seed=common.SEED, use_cpu=True, remove_unused_columns=False, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=collate)
    return _timed(trainer, lengths, model, tokenizer)


def run_trl(workdir: Path) -> dict:
    """TRL's SFTTrainer with its defaults, on prompt/completion pairs (so it trains on completions)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from qlorafx.data.formats.alpaca import PROMPT_NO_INPUT, PROMPT_WITH_INPUT

    base = common.prepare_base(workdir)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.pad_token = tokenizer.eos_token
    train_records, _ = common.records()
    dataset = Dataset.from_list([{"prompt": (PROMPT_WITH_INPUT if r["input"] else PROMPT_NO_INPUT).format(**r),
                                  "completion": r["output"]} for r in train_records])
    model = common.quantized_lora_model(base)
    config = SFTConfig(output_dir=str(workdir / "out"), per_device_train_batch_size=common.EXAMPLES_PER_STEP,
                       num_train_epochs=1, learning_rate=common.LR, lr_scheduler_type="constant", max_grad_norm=0.3,
                       logging_steps=10, save_strategy="no", report_to="none", seed=common.SEED, use_cpu=True,
                       disable_tqdm=True, bf16=False)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    lengths: list[list[int]] = []
    collate = trainer.data_collator

    def counting(batch):
        lengths.append([len(f["input_ids"]) for f in batch])
        return collate(batch)

    trainer.data_collator = counting
    return _timed(trainer, lengths, model, tokenizer)


SETUPS = {"qlorafx": run_qlorafx, "trainer_padding": run_trainer_padding, "trl_sft": run_trl}

if __name__ == "__main__":
    common.threads()
    name = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = SETUPS[name](Path(tmp))
        _, held_out = common.records()
        final = common.held_out_loss(out["model"], out["tokenizer"], held_out)
    print(json.dumps({"setup": name, "wall_s": round(out["wall_s"], 1), "steps": out["steps"],
                      "tokens_per_s": round(out["tokens"] / out["wall_s"], 1), "padding": round(out["padding"], 4),
                      "peak_rss_mb": round(common.peak_rss_mb()), "final_loss": round(final, 4)}))
