"""The set-ups, each run in its own process (so peak memory is its own):

    python bench/setups.py NAME BASE_DIR      # prints one JSON line

qlorafx packed and padded (its own pipeline, from `train()`), the qlora.py-style Trainer baseline,
and TRL's SFTTrainer with its defaults. Every set-up trains the same base (prepared once by run.py in
BASE_DIR) on the same examples with 8 examples (or packed rows) per step, and is timed by the same
clock (bench/common.py): the training loop only, held-out evaluations paused out of it.
"""

from __future__ import annotations

import time

PROCESS_STARTED = time.perf_counter()  # before torch is imported: qlorafx's start-up counts from here

import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def qlorafx_recipe(workdir: Path, base: Path, packing: bool) -> Path:
    import yaml

    train_records, _ = common.records()
    data = workdir / "train.json"
    data.write_text(json.dumps(train_records))
    path = workdir / "bench.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"path": str(base)},
        "quantization": {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"},
        "lora": {"r": common.LORA["r"], "alpha": common.LORA["lora_alpha"], "dropout": 0.0},
        "data": {"datasets": [{"path": str(data), "format": "alpaca"}], "max_length": common.MAX_LENGTH,
                 "packing": packing, "val_size": 0},
        "optimizer": {"name": "adamw", "lr": common.LR},
        "scheduler": {"name": "constant"},
        "training": {"epochs": 1, "micro_batch_size": common.EXAMPLES_PER_STEP, "seed": common.SEED},
        "logging": {"every": 10, "backends": ["jsonl"], "sample_max_new_tokens": 0},
        "output_dir": str(workdir / "run"),
    }))
    return path


def _qlorafx(workdir: Path, base: Path, packing: bool) -> dict:
    """qlorafx's own pipeline, as `qlorafx train` runs it (cache dir inside the work dir: a cold
    tokenization, the same in every round)."""
    from transformers import TrainerCallback

    from qlorafx.recipe.load import load_recipe
    train = common.finetune_module().train

    loaded = load_recipe(qlorafx_recipe(workdir, base, packing), [f"data.cache_dir={workdir / 'cache'}"])
    tokens = {}

    class CountLossTokens(TrainerCallback):  # from the rows the trainer will draw, as it shifts them
        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            tokens["loss"] = common.loss_tokens(train_dataloader.dataset)

    _, held_out = common.records()
    clock = common.clock(held_out, PROCESS_STARTED)
    result = train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None, callbacks=(clock, CountLossTokens()))
    return {"clock": clock, "loss_tokens": tokens["loss"], "steps": result.summary.steps}


def run_qlorafx_packed(workdir: Path, base: Path) -> dict:
    """Default batching: first-fit-decreasing packing into 512-token rows, 8 rows a step."""
    return _qlorafx(workdir, base, packing=True)


def run_qlorafx_padded(workdir: Path, base: Path) -> dict:
    """packing: false: 8 examples a step, each batch padded to its longest."""
    return _qlorafx(workdir, base, packing=False)


def _alpaca_features(tokenizer, records: list[dict]) -> list[dict]:
    """qlora.py's tokenization: source and target tokenized separately, source masked."""
    from qlorafx.data.formats.alpaca import PROMPT_NO_INPUT, PROMPT_WITH_INPUT

    n = common.MAX_LENGTH
    features = []
    for r in records:
        source = (PROMPT_WITH_INPUT if r["input"] else PROMPT_NO_INPUT).format(**r)
        s_ids = tokenizer(source, add_special_tokens=False)["input_ids"][:n - 1]
        t_ids = tokenizer(r["output"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        ids = ([tokenizer.bos_token_id] + s_ids + t_ids)[:n]
        features.append({"input_ids": ids, "labels": ([-100] * (1 + len(s_ids)) + t_ids)[:n]})
    return features


def run_trainer_padding(workdir: Path, base: Path) -> dict:
    """transformers' Trainer, random order, each batch padded to its longest (qlora.py's set-up)."""
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    from qlorafx.data.collate import COLLATORS

    tokenizer = AutoTokenizer.from_pretrained(base)
    train_records, held_out = common.records()
    features = _alpaca_features(tokenizer, train_records)
    pad = COLLATORS.get("pad_to_longest")(0)

    def collate(batch):
        out = pad(batch)
        out.pop("num_tokens")
        return out

    model = common.quantized_lora_model(base)
    args = TrainingArguments(output_dir=str(workdir / "out"), per_device_train_batch_size=common.EXAMPLES_PER_STEP,
                             num_train_epochs=1, learning_rate=common.LR, lr_scheduler_type="constant",
                             max_grad_norm=0.3, logging_steps=10, save_strategy="no", report_to="none",
                             seed=common.SEED, use_cpu=True, remove_unused_columns=False, disable_tqdm=True)
    clock = common.clock(held_out, PROCESS_STARTED)
    trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=collate, processing_class=tokenizer,
                      callbacks=[clock])
    trainer.train()
    return {"clock": clock, "loss_tokens": common.loss_tokens(features), "steps": trainer.state.global_step}


def run_trl_sft(workdir: Path, base: Path) -> dict:
    """TRL's SFTTrainer with its defaults, on prompt/completion pairs (so it trains on completions)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from qlorafx.data.formats.alpaca import PROMPT_NO_INPUT, PROMPT_WITH_INPUT

    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.pad_token = tokenizer.eos_token
    train_records, held_out = common.records()
    dataset = Dataset.from_list([{"prompt": (PROMPT_WITH_INPUT if r["input"] else PROMPT_NO_INPUT).format(**r),
                                  "completion": r["output"]} for r in train_records])
    model = common.quantized_lora_model(base)
    config = SFTConfig(output_dir=str(workdir / "out"), per_device_train_batch_size=common.EXAMPLES_PER_STEP,
                       num_train_epochs=1, learning_rate=common.LR, lr_scheduler_type="constant", max_grad_norm=0.3,
                       logging_steps=10, save_strategy="no", report_to="none", seed=common.SEED, use_cpu=True,
                       disable_tqdm=True, bf16=False, max_length=common.MAX_LENGTH)
    clock = common.clock(held_out, PROCESS_STARTED)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
    counted = []
    collate = trainer.data_collator

    def counting(batch):
        out = collate(batch)
        counted.append(int((out["labels"][:, 1:] != -100).sum()))
        return out

    trainer.data_collator = counting
    trainer.train()
    return {"clock": clock, "loss_tokens": sum(counted), "steps": trainer.state.global_step}


SETUPS = {"qlorafx_packed": run_qlorafx_packed, "qlorafx_padded": run_qlorafx_padded,
          "trainer_padding": run_trainer_padding, "trl_sft": run_trl_sft}

if __name__ == "__main__":
    threads = common.threads()
    name, base = sys.argv[1], Path(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        out = SETUPS[name](Path(tmp), base)
    clock = out["clock"]
    print(json.dumps({"setup": name, "threads": threads, "train_s": round(clock.train_seconds, 2),
                      "train_cpu_s": round(clock.train_cpu_seconds, 2), "steps": out["steps"],
                      "loss_tokens": out["loss_tokens"], "first_step_s": round(clock.first_step_at, 2),
                      "curve": [(round(s, 2), step, round(loss, 4)) for s, step, loss in clock.curve],
                      "peak_rss_mb": round(common.peak_rss_mb())}))
