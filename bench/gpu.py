"""The GPU check: qlorafx on a Llama-3.1-8B-shaped model, against `qlorafx estimate` and against the
qlora.py set-up, in one run of a few minutes.

    make gpu-check                      # = python bench/gpu.py, from the repository root, in its venv
    python bench/gpu.py --tiny --out /tmp/RESULTS-tiny.md      # the same code on a tiny model, CPU or GPU

On one GPU, with no hub: a model of Llama 3.1 8B's shape (qlorafx's copy of its config.json) is built
with random weights on the GPU, in bfloat16, and saved once with the built-in byte tokenizer (its 259
ids fall inside the model's 128,256-entry vocabulary; the head still computes every logit). Then:

  1. qlorafx's own pipeline (`qlorafx train` in process): NF4 + double quantization, bf16 compute,
     LoRA r 64 on every linear layer, paged AdamW, examples packed into 2,048-token rows, gradient
     checkpointing on, then off: tokens/s over the steps after the first (warm-up) ones, model FLOPs
     utilisation, and torch's peak allocated memory against `qlorafx estimate --device cuda`.
  2. Packed rows against the same examples unpacked, through the trained model, with the Trainer's
     own loss: the same targets, the same summed loss (bf16 rounding); under sdpa, and under
     flash_attention_2 when the flash-attn package is installed.
  3. The baseline, the same examples and LoRA through a plain transformers Trainer, each batch padded to
     its longest with group_by_length (qlora.py's set-up: LoRA and the embeddings and head cast to bf16,
     norms in fp32), with about as many real tokens a step.

It writes bench/RESULTS-gpu.md (or --out). Model FLOPs per trained token, attention left out: 2N
forward and 2N for the input gradients through every linear layer and the head (N their parameters,
frozen or not), plus 2 N_lora for the adapter's weight gradients; recomputation under gradient
checkpointing is not counted. MFU divides by the GPU's dense bf16 peak (H100/H200: 989 TFLOP/s;
--peak-tflops for another). Paged optimizer states live outside torch's allocator, so the measured peak
is set against the estimate without them.

On the GPU machine of this project's device tool (Python 3.12, torch 2.11, transformers 5.17, peft and
accelerate installed; no hub) bitsandbytes, pydantic and omegaconf are missing, and qlorafx was developed
with transformers 5.24 (`train_sampling_strategy` and the FSDP2 defaults are newer than 5.17). Carry
wheels, as /work/.library/device/README.md says there: here, at the repository root,
`echo /.whl/ >> .git/info/exclude`, then `python3 -m pip download --no-deps --only-binary=:all:
--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64
--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl bitsandbytes==0.50.2
pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection omegaconf transformers==5.24.0
peft==0.21.2 accelerate==1.15.0` (59 MB, checked here; omegaconf 2.4 needs only PyYAML; the machine's
huggingface_hub 1.33, tokenizers 0.23 and safetensors 0.8 satisfy transformers 5.24). The run carries `.whl`
and is `python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
.whl/*.whl && PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 python3 bench/gpu.py --out $OUT/RESULTS-gpu.md`:
only files under $OUT come back from that machine (the default bench/RESULTS-gpu.md stays there), and
unbuffered, the JSON line each set-up prints reaches the reply's output even when the run is stopped at
its limit. Copy the page back to bench/RESULTS-gpu.md here. Not yet run on a GPU: the figures in
bench/RESULTS-gpu.md come from the first run there.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

EIGHT_B = ROOT / "configs" / "architectures" / "meta-llama" / "Llama-3.1-8B.json"
TINY = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, vocab_size=512)
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16, from the data sheets
BF16_RELATIVE = 2e-3  # summed bf16 losses over differently shaped batches (bench/gpu_fa2_packing.py)


def plan(tiny: bool) -> dict:
    """Sizes of the run: the real check on a GPU, or a tiny one that exercises the same code in seconds."""
    if tiny:
        return dict(examples=48, max_length=256, rows=2, steps=3, warmup=1, median=90, dtype="float32", checked=16)
    return dict(examples=600, max_length=2048, rows=2, steps=10, warmup=2, median=420, dtype="bfloat16", checked=96)


def write_data(folder: Path, p: dict) -> Path:
    """Alpaca-format records with log-normal lengths around p['median'] bytes (= byte-tokenizer tokens)."""
    rng = random.Random(0)
    words = [w for w in "the a of to in is was for on that with as by at from it an be this which or are".split()]
    lines = []
    for i in range(p["examples"]):
        length = min(int(rng.lognormvariate(0, 0.7) * p["median"]), p["max_length"] * 2)
        text = " ".join(rng.choice(words) for _ in range(max(2, length // 3)))
        cut = max(1, len(text) // 4)
        lines.append(json.dumps({"instruction": f"Task {i}: {text[:cut]}", "input": "", "output": text[cut:]}))
    path = folder / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    (folder / "checked.jsonl").write_text("\n".join(lines[:p["checked"]]) + "\n")  # for the packed-vs-unpacked check
    return path


def build_base(folder: Path, tiny: bool, device: str, dtype: str) -> Path:
    """Random weights of the model's shape, made on the device, saved with the byte tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from qlorafx.model.byte_tokenizer import byte_tokenizer

    fields = dict(TINY) if tiny else json.loads(EIGHT_B.read_text())
    tokenizer = byte_tokenizer()
    config = AutoConfig.for_model(fields.pop("model_type"), **{**fields, "bos_token_id": tokenizer.bos_token_id,
                                                               "eos_token_id": tokenizer.eos_token_id,
                                                               "pad_token_id": tokenizer.pad_token_id})
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    base = folder / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    del model
    _free()
    return base


def recipe_file(folder: Path, base: Path, data: Path, p: dict, checkpointing: bool) -> Path:
    import yaml

    path = folder / f"gpu-check-{'gc' if checkpointing else 'nogc'}.yaml"
    path.write_text(yaml.safe_dump({
        "description": "GPU check",
        "model": {"path": str(base), "attn_implementation": "sdpa"},
        "quantization": {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": p["dtype"]},
        "lora": {"r": 64, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"},
        "data": {"datasets": [{"path": str(data), "format": "alpaca"}], "max_length": p["max_length"],
                 "packing": True, "val_size": 0},
        "optimizer": {"name": "paged_adamw_32bit", "lr": 2e-4},
        "scheduler": {"name": "constant"},
        "training": {"max_steps": p["warmup"] + p["steps"], "micro_batch_size": p["rows"],
                     "gradient_checkpointing": checkpointing, "save_every": 10 ** 6, "max_grad_norm": 0.3},
        "logging": {"every": 1, "backends": ["jsonl"], "sample_max_new_tokens": 0},
        "output_dir": str(folder / f"run-{'gc' if checkpointing else 'nogc'}"),
    }))
    return path


class Meter:
    """A Trainer callback: tokens and seconds over the steps after warm-up, and the peak of allocated memory."""

    def __init__(self, warmup: int, tokens):
        from transformers import TrainerCallback

        meter = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()

            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == warmup:
                    _sync()
                    meter.started, meter.tokens_at_start = time.perf_counter(), tokens(state)

            def on_train_end(self, args, state, control, **kwargs):
                _sync()
                meter.seconds = time.perf_counter() - meter.started
                meter.tokens = tokens(state) - meter.tokens_at_start
                meter.steps = state.global_step - warmup
                meter.peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None

        self.callback = Callback()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def flops_per_token(model) -> tuple[float, int]:
    """(model FLOPs per trained token, trainable parameters): see the module's docstring."""
    linear = sum(m.in_features * m.out_features for m in model.modules()
                 if hasattr(m, "in_features") and hasattr(m, "out_features") and not hasattr(m, "base_layer"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 4.0 * linear + 2.0 * trainable, trainable


def run_qlorafx(folder: Path, base: Path, data: Path, p: dict, checkpointing: bool) -> tuple[dict, object]:
    from qlorafx.estimate import estimate
    from qlorafx.estimate.configs import model_config
    from qlorafx.estimate.shape import model_shape
    from qlorafx.recipe.load import load_recipe
    from qlorafx.finetune import train

    loaded = load_recipe(recipe_file(folder, base, data, p, checkpointing))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    predicted = estimate(loaded.recipe, model_shape(loaded.recipe, model_config(loaded.recipe)[0]), p["dtype"], device)
    meter = Meter(p["warmup"], lambda state: state.num_input_tokens_seen)
    result = train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None, callbacks=(meter.callback,))
    flops, trainable = flops_per_token(result.model)
    torch_visible = predicted.peak() - (predicted.optimizer_states if predicted.paged else 0)
    return {"set-up": "qlorafx, packed", "checkpointing": checkpointing, "rows": f"{p['rows']} x {p['max_length']}",
            **_rates(meter, flops), "peak": meter.peak, "estimate": predicted.peak(), "estimate_torch": torch_visible,
            "trainable": trainable}, result


def _rates(meter: Meter, flops: float) -> dict:
    tokens_per_s = meter.tokens / meter.seconds
    return {"tokens_per_step": meter.tokens / max(meter.steps, 1), "tokens_per_s": tokens_per_s,
            "tflops": tokens_per_s * flops / 1e12}


def packed_vs_unpacked(model, tokenizer, folder: Path, data: Path, p: dict) -> list[dict]:
    """Summed loss and target count over the same examples, packed and unpacked, per attention kernel."""
    kernels = ["sdpa"]
    try:
        import flash_attn  # noqa: F401
        kernels.append("flash_attention_2")
    except ImportError:
        pass
    found = []
    for kernel in kernels:
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(kernel)
        (alone, n_alone), (packed, n_packed) = (_trainer_loss(model, tokenizer, folder, data, p, kernel, packing)
                                                for packing in (False, True))
        relative = abs(packed - alone) / alone
        tolerance = BF16_RELATIVE if p["dtype"] == "bfloat16" else 1e-5
        found.append({"kernel": kernel, "unpacked": alone, "packed": packed, "targets": (n_alone, n_packed),
                      "relative": relative, "equal": n_alone == n_packed and relative <= tolerance,
                      "tolerance": tolerance})
    if "flash_attention_2" not in kernels:
        found.append({"kernel": "flash_attention_2", "skipped": "the flash-attn package is not installed"})
    return found


def _trainer_loss(model, tokenizer, folder: Path, data: Path, p: dict, kernel: str, packing: bool):
    from qlorafx.data.build import prepare
    from qlorafx.data.collate import COLLATORS, collator_for
    from qlorafx.recipe.load import load_recipe
    from qlorafx.train.optimizers import OPTIMIZERS
    from qlorafx.train.trainers import TRAINERS

    loaded = load_recipe(recipe_file(folder, folder / "base", data, p, True), [f"data.packing={str(packing).lower()}",
                                                                             f"model.attn_implementation={kernel}"])
    r = loaded.recipe
    prepared = prepare(r, tokenizer, log=lambda *_: None)
    trainer = TRAINERS.get("causal_lm")(r, model, tokenizer, prepared,
                                        collator=COLLATORS.get(collator_for(r, False))(tokenizer.pad_token_id, kernel),
                                        optimizer=OPTIMIZERS.get("adamw")(r.optimizer), callbacks=[],
                                        run_dir=folder / "loss-check")
    total, targets = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in trainer.get_train_dataloader():
            _, count = trainer.get_batch_samples(iter([batch]), 1, trainer.args.device)
            total += float(trainer.compute_loss(model, dict(batch), num_items_in_batch=count)) * int(count)
            targets += int(count)
    return total, targets


def run_baseline(folder: Path, base: Path, data: Path, p: dict, tokens_per_step: float) -> dict:
    """qlora.py's set-up through a plain Trainer: padding to the longest of each batch, group_by_length."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from peft.tuners.lora import LoraLayer
    from transformers import (AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, DataCollatorForSeq2Seq,
                              Trainer, TrainingArguments)

    from qlorafx.data.build import prepare
    from qlorafx.model.quantize import keep_weights_trainable_on_cpu
    from qlorafx.recipe.load import load_recipe

    gpu, dtype = torch.cuda.is_available(), getattr(torch, p["dtype"])
    tokenizer = AutoTokenizer.from_pretrained(base)
    recipe = load_recipe(recipe_file(folder, base, data, p, True), ["data.packing=false"]).recipe
    examples = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in prepare(recipe, tokenizer, log=lambda *_: None).train]
    per_step = max(1, round(tokens_per_step / (sum(len(e["input_ids"]) for e in examples) / len(examples))))
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(base, quantization_config=quant, dtype=dtype, attn_implementation="sdpa",
                                                 device_map={"": 0} if gpu else None)
    keep_weights_trainable_on_cpu(model)  # a no-op on a GPU; on CPU, bitsandbytes' repacking would break training
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=64, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    for name, module in model.named_modules():  # qlora.py, under --bf16
        if isinstance(module, LoraLayer) and dtype == torch.bfloat16:
            module.to(torch.bfloat16)
        if "norm" in name:
            module.to(torch.float32)
        if ("lm_head" in name or "embed_tokens" in name) and getattr(module, "weight", None) is not None \
                and dtype == torch.bfloat16 and module.weight.dtype == torch.float32:
            module.to(torch.bfloat16)
    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    seen = [0]

    def collate(batch):
        out = pad(batch)
        seen[0] += int(out["attention_mask"].sum())
        return out

    args = TrainingArguments(output_dir=str(folder / "baseline"), per_device_train_batch_size=per_step,
                             max_steps=p["warmup"] + p["steps"], learning_rate=2e-4, lr_scheduler_type="constant",
                             max_grad_norm=0.3, optim="paged_adamw_32bit", train_sampling_strategy="group_by_length",
                             bf16=gpu and dtype == torch.bfloat16,
                             logging_steps=1, save_strategy="no", report_to="none", seed=0, use_cpu=not gpu,
                             remove_unused_columns=False, disable_tqdm=True, dataloader_num_workers=0)
    meter = Meter(p["warmup"], lambda state: seen[0])
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collate, callbacks=[meter.callback])
    trainer.train()
    flops, trainable = flops_per_token(model)
    summary = {"set-up": "Trainer, padded (qlora.py)", "checkpointing": True, "rows": f"{per_step} examples",
               **_rates(meter, flops), "peak": meter.peak, "trainable": trainable}
    del trainer, model
    _free()
    return summary


def gib(n) -> str:
    return "n/a" if n is None else f"{n / 2 ** 30:.2f} GiB"


def markdown(runs: list[dict], checks: list[dict], p: dict, peak_tflops: float | None, seconds: float, tiny: bool) -> str:
    import bitsandbytes
    import transformers

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or 'unknown'})"
    lines = [f"# GPU check{' (tiny shape)' if tiny else ''}", "",
             f"`python bench/gpu.py{' --tiny' if tiny else ''}` on {device}; torch {torch.__version__}, transformers "
             f"{transformers.__version__}, bitsandbytes {bitsandbytes.__version__}; {seconds:.0f} s in all.",
             f"Model: {'tiny Llama' if tiny else 'Llama 3.1 8B shape'}, random weights, NF4 + double quantization, "
             f"{p['dtype']} compute, LoRA r 64 on all linear layers, paged AdamW; {p['steps']} measured steps after "
             f"{p['warmup']} warm-up.", "",
             "| set-up | gradient checkpointing | micro-batch | tokens/step | tokens/s | MFU | peak allocated | "
             "estimate (torch-visible / all) |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        mfu = f"{100 * r['tflops'] / peak_tflops:.1f}% ({r['tflops']:.0f} TFLOP/s)" if peak_tflops else "n/a"
        estimate = f"{gib(r['estimate_torch'])} / {gib(r['estimate'])}" if "estimate" in r else "-"
        lines.append(f"| {r['set-up']} | {'on' if r['checkpointing'] else 'off'} | {r['rows']} | {r['tokens_per_step']:.0f} "
                     f"| {r['tokens_per_s']:.0f} | {mfu} | {gib(r['peak'])} | {estimate} |")
    lines += ["", "Packed rows against the same examples unpacked (the trained model, the Trainer's own loss):", ""]
    for c in checks:
        if "skipped" in c:
            lines.append(f"- {c['kernel']}: not run, {c['skipped']}")
        else:
            lines.append(f"- {c['kernel']}: {'EQUAL' if c['equal'] else 'DIFFERENT'}: summed loss {c['unpacked']:.4f} "
                         f"unpacked, {c['packed']:.4f} packed (relative {c['relative']:.1e}, allowed "
                         f"{c['tolerance']:.0e}); targets {c['targets'][0]} and {c['targets'][1]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model: checks the script itself, CPU or GPU")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-gpu.md")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, for MFU")
    args = parser.parse_args(argv)
    gpu = torch.cuda.is_available()
    if not gpu and not args.tiny:
        print("no CUDA GPU here: run on a GPU machine, or --tiny to check the script on this one", file=sys.stderr)
        return 2
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight loading and saving bars, three times over
    p = plan(args.tiny)
    name = torch.cuda.get_device_name() if gpu else ""
    peak_tflops = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qlorafx-gpu-check-") as tmp:
        folder = Path(tmp)
        data = write_data(folder, p)
        base = build_base(folder, args.tiny, "cuda" if gpu else "cpu", p["dtype"])
        runs, checks = [], []
        for checkpointing in (True, False):
            summary, result = run_qlorafx(folder, base, data, p, checkpointing)
            runs.append(summary)
            print(json.dumps({k: v for k, v in summary.items()}), flush=True)
            if checkpointing:
                checks = packed_vs_unpacked(result.model, result.tokenizer, folder, folder / "checked.jsonl", p)
            del result
            _free()
        runs.append(run_baseline(folder, base, data, p, runs[0]["tokens_per_step"]))
        print(json.dumps(runs[-1]), flush=True)
    text = markdown(runs, checks, p, peak_tflops, time.perf_counter() - started, args.tiny)
    args.out.write_text(text)
    print(text)
    return 0 if all(c.get("equal", True) for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
