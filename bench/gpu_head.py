"""The output head at labelled positions only, on an 8B-shaped model: peak memory and tokens/s, before
and after (issue 15). NOT YET RUN ON A GPU: the figures in bench/RESULTS-gpu.md come from this script
when one is available.

    python bench/gpu_head.py                 # on an NVIDIA GPU, from the repository root, in its venv
    python bench/gpu_head.py --tiny          # anywhere (CPU): a tiny shape, to check the script itself

The 8B shape is Llama-3.1-8B's (hidden 4096, intermediate 14336, 32 layers, 32 heads, 8 KV heads,
vocabulary 128,256; --layers N for fewer layers), random bf16 weights saved once, loaded by qlorafx's
pipeline in 4 bits (NF4, double quantization, bf16 compute), LoRA r 16 on all linear layers, gradient checkpointing, Alpaca
(../shared/data, else the quickstart data) through the byte tokenizer, max length 2048, packed.
Each mode trains in its own process through qlorafx's real pipeline (`train()`):
  - full: the head over every position (the Trainer's loss path before issue 15),
  - unfused: the head at labelled positions only, then the model's own loss,
  - labelled: the head's product fused with the loss at labelled positions, chunk by chunk (qlorafx's
    default): the N x vocabulary logits are never held.
It reports, per mode, the mean step time after the warm-up steps, tokens and loss-carrying tokens
per second, the peak memory (torch.cuda.max_memory_allocated; peak RSS on CPU) and the logged losses,
which must agree between the modes (bf16 rounding). Exit code 0 when they do; on a GPU the table is
appended to bench/RESULTS-gpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_5000.json"
QUICKSTART = ROOT / "recipes" / "data" / "quickstart.jsonl"
SHAPES = {
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, max_position_embeddings=4096, rope_theta=500000.0),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, vocab_size=32000, max_position_embeddings=1024),
}
LOSS_AGREEMENT = 2e-2  # relative, per logged loss: bf16 sums in another order over other shapes


def build_base(folder: Path, shape: str, layers: int | None) -> Path:
    """Random weights of the shape (bf16 on a GPU), with the byte tokenizer, saved once for both modes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sys.path.insert(0, str(ROOT / "src"))
    from qlorafx.model.byte_tokenizer import byte_tokenizer

    tokenizer = byte_tokenizer()
    fields = {**SHAPES[shape], **({"num_hidden_layers": layers} if layers else {})}
    config = AutoConfig.for_model("llama", bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id, **fields)
    torch.manual_seed(0)
    gpu = torch.cuda.is_available()
    with torch.device("cuda" if gpu else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if gpu else torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def recipe(run_dir: Path, base: Path, shape: str, args) -> dict:
    data = {"path": str(ALPACA), "format": "alpaca"} if ALPACA.is_file() else {"path": str(QUICKSTART), "format": "alpaca"}
    if ALPACA.is_file():
        data["max_examples"] = args.examples
    return {
        "model": {"path": str(base), "attn_implementation": "sdpa"},
        "quantization": {"bits": 4, "quant_type": "nf4", "double_quant": True,
                         "compute_dtype": "bfloat16" if shape == "8b" else "float32"},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
        "data": {"datasets": [data], "max_length": args.max_length, "packing": True, "val_size": 0,
                 "shuffle": False, "cache_dir": str(run_dir.parent / "cache")},
        "optimizer": {"name": "paged_adamw_32bit", "lr": 2e-4},
        "scheduler": {"name": "constant"},
        "training": {"max_steps": args.steps, "micro_batch_size": args.micro_batch, "seed": 0,
                     "gradient_checkpointing": shape == "8b", "max_grad_norm": 0.3},
        "logging": {"every": 1, "backends": ["jsonl"], "sample_max_new_tokens": 0},
        "output_dir": str(run_dir),
    }


def one_mode(mode: str, base: Path, shape: str, args) -> dict:
    """Train in this process with the head over every position (full) or at labelled positions (unfused, labelled)."""
    import torch
    from transformers import TrainerCallback

    sys.path.insert(0, str(ROOT / "src"))
    import yaml

    from qlorafx.finetune import train
    from qlorafx.recipe.load import load_recipe
    from full_head import use_head  # bench/, this script's folder

    use_head(mode)
    gpu = torch.cuda.is_available()
    sync = torch.cuda.synchronize if gpu else (lambda: None)

    class Steps(TrainerCallback):
        def __init__(self):
            self.times, self.tokens, self.started, self.seen = [], [], 0.0, 0

        def on_step_begin(self, a, state, control, **kwargs):
            sync()
            self.started, self.seen = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, a, state, control, **kwargs):
            sync()
            self.times.append(time.perf_counter() - self.started)
            self.tokens.append(state.num_input_tokens_seen - self.seen)

    steps = Steps()
    loss_tokens = {}

    class CountLossTokens(TrainerCallback):
        def on_train_begin(self, a, state, control, train_dataloader=None, **kwargs):
            rows = list(train_dataloader.dataset)[:args.steps * args.micro_batch]
            loss_tokens["per_row"] = sum(sum(1 for x in r["labels"][1:] if x != -100) for r in rows) / len(rows)

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        # through a recipe file, as `qlorafx train` reads one: the run directory keeps its text
        recipe_file = Path(tmp) / "gpu_head.yaml"
        recipe_file.write_text(yaml.safe_dump(recipe(run_dir, base, shape, args)))
        loaded = load_recipe(recipe_file)
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None, callbacks=(steps, CountLossTokens()))
        losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                  if "loss" in json.loads(line)]
    import resource

    peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    timed = steps.times[args.warmup:]
    tokens = sum(steps.tokens[args.warmup:])
    return {"mode": mode, "device": torch.cuda.get_device_name() if gpu else "cpu", "step_s": sum(timed) / len(timed),
            "tokens_per_s": tokens / sum(timed),
            "loss_tokens_per_s": loss_tokens["per_row"] * args.micro_batch * len(timed) / sum(timed),
            "peak_gib": peak, "losses": losses}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="a tiny shape, on whatever device there is")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--layers", type=int, help="fewer decoder layers than the shape's (same head), to save time")
    parser.add_argument("--mode", choices=["full", "unfused", "labelled"], help=argparse.SUPPRESS)  # one process per mode
    parser.add_argument("--base", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = "tiny" if args.tiny else "8b"
    args.steps = args.steps or (4 if args.tiny else 8)
    args.micro_batch = args.micro_batch or (2 if args.tiny else 4)
    args.max_length = args.max_length or (256 if args.tiny else 2048)
    args.warmup = min(args.warmup, args.steps - 1)
    if args.mode:
        print(json.dumps(one_mode(args.mode, args.base, shape, args)))
        return 0

    import torch

    if shape == "8b" and not torch.cuda.is_available():
        print("SKIPPED: the 8B shape needs an NVIDIA GPU (about 12 GB with these settings); "
              "run with --tiny to check the script on CPU")
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = build_base(Path(tmp) / "base", shape, args.layers)
        for mode in ("full", "unfused", "labelled"):
            argv = [sys.executable, __file__, "--mode", mode, "--base", str(base), "--steps", str(args.steps),
                    "--warmup", str(args.warmup), "--micro-batch", str(args.micro_batch), "--max-length",
                    str(args.max_length), "--examples", str(args.examples), *(["--tiny"] if args.tiny else [])]
            done = subprocess.run(argv, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
            if done.returncode != 0:
                print(done.stderr[-4000:], file=sys.stderr)
                return 1
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    full, unfused, labelled = results["full"], results["unfused"], results["labelled"]
    agree = all(len(full["losses"]) == len(r["losses"]) and all(
        abs(a - b) <= LOSS_AGREEMENT * abs(a) for a, b in zip(full["losses"], r["losses"])) for r in (unfused, labelled))
    unit = "GiB (cuda max allocated)" if full["device"] != "cpu" else "GiB (peak RSS)"
    layers = f", {args.layers} layers" if args.layers else ""
    lines = [f"## {date.today()}, {full['device']}, shape {shape}{layers}, micro-batch {args.micro_batch} x {args.max_length} "
             f"tokens packed, {args.steps} steps ({args.warmup} warm-up)", "",
             f"| head | s / step | tokens/s | loss tokens/s | peak {unit} |", "|---|---:|---:|---:|---:|"]
    for name, r in (("every position (before)", full), ("labelled positions only, then the loss", unfused),
                    ("labelled positions only, fused with the loss (after)", labelled)):
        lines.append(f"| {name} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | {r['loss_tokens_per_s']:.0f} | "
                     f"{r['peak_gib']:.2f} |")
    lines += ["", f"speed-up {full['step_s'] / labelled['step_s']:.2f}x, peak memory {labelled['peak_gib'] / full['peak_gib']:.2f}x; "
              f"logged losses {'agree' if agree else 'DIFFER'}: full {[round(x, 4) for x in full['losses']]}, "
              f"unfused {[round(x, 4) for x in unfused['losses']]}, labelled {[round(x, 4) for x in labelled['losses']]}; "
              f"fused against unfused: {unfused['step_s'] / labelled['step_s']:.2f}x speed, "
              f"{labelled['peak_gib'] / unfused['peak_gib']:.2f}x peak memory", ""]
    print("\n".join(lines))
    if full["device"] != "cpu" and not args.tiny:
        with (ROOT / "bench" / "RESULTS-gpu.md").open("a") as f:
            f.write("\n".join(lines) + "\n")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
