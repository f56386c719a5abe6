"""A finished run -> README.md, the run's model card: what was trained, on what, how, how well,
and how to load it. Everything comes from the run directory's own files.

The YAML front matter is the Hugging Face Hub's model-card metadata, so the run directory can
be pushed to the Hub as it is.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from qlorafx.model.loaders import FROM_CONFIG, PRETRAINED
from qlorafx.report.run import FinishedRun
from qlorafx.run_files import ADAPTER_DIR, BASE_MODEL_DIR, RECIPE_FILE, TOKENIZER_DIR

DATA_COUNTS = {  # keys of run.json's data summary (qlorafx.data.report.summary), in the card's order
    "examples": "training examples",
    "val_examples": "validation examples",
    "tokens": "tokens (train + validation)",
    "trained_tokens": "tokens that carry loss",
    "truncated": "examples truncated at max_length",
    "dropped": "examples dropped (longer than max_length)",
    "filtered": "records filtered out",
    "no_trained_token": "examples with no token that carries loss",
}


def _table(rows: list[tuple[str, Any]]) -> list[str]:
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _base_model(run: FinishedRun) -> str:
    m = run.recipe.model
    if m.loader == FROM_CONFIG:
        return f"`{m.config.get('model_type')}` built from a config with random weights, saved in `base_model/`"
    revision = f" (revision `{m.revision}`)" if m.revision else ""
    return f"`{m.path}`{revision}"


def _front_matter(run: FinishedRun) -> list[str]:
    m = run.recipe.model
    lines = ["---", "library_name: peft"]
    if m.loader == PRETRAINED and m.path and not os.path.isabs(m.path):  # a hub id, not a local folder
        lines.append(f"base_model: {m.path}")
    return [*lines, "tags: [qlora, lora, peft, qlorafx]", "---", ""]


def _method(run: FinishedRun) -> list[str]:
    q, lora, s = run.recipe.quantization, run.recipe.lora, run.status
    targets = lora.target_modules if isinstance(lora.target_modules, str) else ", ".join(lora.target_modules)
    trainable, total = s.get("trainable_params"), s.get("total_params")
    share = f"{trainable:,} of {total:,} ({trainable / total:.2%})" if trainable and total else "n/a"
    if q.bits == 4:
        base = f"4-bit {q.quant_type.upper()}" + (", double quantization" if q.double_quant else ", no double quantization")
    elif q.bits == 8:
        base = "8-bit (LLM.int8)"
    else:
        base = "16-bit, not quantized (plain LoRA)"
    return ["## Method", "",
            *_table([("base weights", base),
                     ("compute dtype", f"{q.compute_dtype}" + (f" (resolved to {run.versions['compute_dtype']})"
                                                             if q.compute_dtype == "auto" and run.versions.get("compute_dtype") else "")),
                     ("LoRA rank r", lora.r), ("LoRA alpha", f"{lora.alpha:g} (scale {lora.alpha / lora.r:g})"),
                     ("LoRA dropout", f"{lora.dropout:g}"), ("target modules", f"`{targets}`"),
                     ("trainable parameters", share)]), ""]


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "n/a"


def _data(run: FinishedRun) -> list[str]:
    d = run.recipe.data
    counts = run.status.get("data") or {}
    per_dataset = counts.get("datasets") or []
    lines = ["## Data", "", "| dataset | format | records | examples | tokens |", "|---|---|---|---|---|"]
    for i, ds in enumerate(d.datasets):
        found = per_dataset[i] if i < len(per_dataset) and isinstance(per_dataset[i], dict) else {}
        lines.append(f"| `{getattr(ds, 'path', '?')}` | {getattr(ds, 'format', '?')} | {_count(found.get('records'))} "
                     f"| {_count(found.get('examples'))} | {_count(found.get('tokens'))} |")
    rows = [(label, _count(counts[key])) for key, label in DATA_COUNTS.items() if key in counts]
    if isinstance(counts.get("trained_token_fraction"), float):
        rows.append(("share of tokens that carry loss", f"{counts['trained_token_fraction']:.1%}"))
    length = counts.get("length")
    if isinstance(length, dict) and length:
        rows.append(("example length in tokens", ", ".join(f"{k} {v}" for k, v in length.items())))
    if counts.get("batching"):
        padding = counts.get("padding_fraction")
        from qlorafx.data.report import BATCHING_WORDS

        rows.append(("batching", BATCHING_WORDS.get(counts["batching"], counts["batching"])
                     + (f", {padding:.1%} padding" if isinstance(padding, float) else "")))
    rows += [("max_length", d.max_length), ("loss on", "prompt and response" if d.train_on_inputs else "responses only")]
    return [*lines, "", *_table(rows), ""]


def _hyperparameters(run: FinishedRun) -> list[str]:
    r = run.recipe
    o, sch, t = r.optimizer, r.scheduler, r.training
    warmup = (f", {sch.warmup_steps} warm-up steps" if sch.warmup_steps else
              f", warm-up {sch.warmup_ratio:g} of the steps" if sch.warmup_ratio else "")
    length = f"{t.max_steps} steps" if t.max_steps else f"{t.epochs or 1:g} epoch(s)"
    return ["## Hyperparameters", "",
            *_table([("optimizer", f"{o.name}, lr {o.lr:g}, weight decay {o.weight_decay:g}"),
                     ("schedule", f"{sch.name}{warmup}"), ("length", length),
                     ("batch", f"{t.micro_batch_size} per device x {t.grad_accum} accumulation = "
                               f"{t.micro_batch_size * t.grad_accum} per device per step"),
                     ("max grad norm", f"{t.max_grad_norm:g}"),
                     ("gradient checkpointing", "on" if t.gradient_checkpointing else "off"),
                     ("seed", t.seed)]),
            "", "The full resolved recipe is [`recipe.yaml`](recipe.yaml).", ""]


def _results(run: FinishedRun, plot_name: str | None) -> list[str]:
    s = run.status
    before, after = s.get("eval_loss_before"), s.get("eval_loss_after")
    rows: list[tuple[str, Any]] = [("optimizer steps", s.get("steps")), ("wall time", f"{s.get('wall_seconds', 0):.0f} s")]
    if before is not None and after is not None:
        rows.append(("eval loss", f"{before:.4f} -> {after:.4f} ({after / before:.2f}x)"))
        rows.append(("eval perplexity", f"{math.exp(min(before, 50)):.2f} -> {math.exp(min(after, 50)):.2f}"))
    rows.append(("last train loss", _num(s.get("train_loss_last"))))
    speeds = [r["tokens_per_s"] for r in run.train_logs if isinstance(r.get("tokens_per_s"), (int, float))]
    if speeds:
        rows.append(("throughput", f"{sum(speeds) / len(speeds):,.0f} tokens/s (mean over logs)"))
    lines = ["## Results", "", *_table(rows), ""]
    lines += _later_evaluations(s.get("evaluations") or [])
    lines += _judged(s.get("judged") or [])
    if plot_name:
        lines += [f"![train and eval loss, learning rate]({plot_name})", ""]
    else:
        lines += ["No plot: the run kept no `metrics.jsonl` (add `jsonl` to `logging.backends`).", ""]
    if s.get("sample_output") is not None:
        text = f"{s.get('sample_prompt') or ''}{s['sample_output']}"
        fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))  # longer than any inside
        lines += ["Sample generation after training (prompt from the validation split):", "", fence, text, fence, ""]
    return lines


def _later_evaluations(evaluations: list[dict[str, Any]]) -> list[str]:
    """What `qlorafx eval` added to run.json after training."""
    if not evaluations:
        return []
    lines = ["Evaluations after training (`qlorafx eval`):", "",
             "| data | loss | perplexity | tokens | multiple choice |", "|---|---|---|---|---|"]
    for e in evaluations:
        choice = (f"{e['mc_accuracy']:.1%} of {e.get('mc_questions', '?')} (`{e.get('mc_file', '?')}`)"
                  if isinstance(e.get("mc_accuracy"), (int, float)) else "")
        lines.append(f"| {e.get('eval_data', '')} | {_num(e.get('eval_loss')) if 'eval_loss' in e else ''} "
                     f"| {_num(e.get('eval_perplexity'), 2) if 'eval_perplexity' in e else ''} "
                     f"| {_count(e['eval_tokens']) if 'eval_tokens' in e else ''} | {choice} |")
    return [*lines, ""]


def _interval(e: Any, percent: bool = False) -> str:
    if not isinstance(e, dict) or not all(isinstance(e.get(k), (int, float)) for k in ("value", "low", "high")):
        return "n/a"
    return (f"{e['value']:.1%} [{e['low']:.1%}, {e['high']:.1%}]" if percent
            else f"{e['value']:.0f} [{e['low']:.0f}, {e['high']:.0f}]")


def _judged(comparisons: list[dict[str, Any]]) -> list[str]:
    """What `qlorafx judge` added to run.json: this run's figures in each judged comparison."""
    if not comparisons:
        return []
    lines = ["Judged comparisons (`qlorafx judge`; intervals at the confidence each comparison used):", "",
             "| comparison | judge | against | rank | Elo | wins / ties / losses | win rate | relative score |",
             "|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        if not isinstance(c, dict):
            continue
        opponents = ", ".join(map(str, c.get("opponents") or []))
        relative = f"{_interval(c.get('relative_score'), percent=True)} of {c.get('reference')}" if c.get("relative_score") else ""
        unread = (f"; {c['unparseable']} of {c['judgments']} verdicts unparseable"
                  if c.get("unparseable") and c.get("judgments") else "")
        lines.append(f"| `{c.get('comparison', '?')}` | {c.get('judge', '?')} ({c.get('mode', '?')}, {c.get('questions', '?')} "
                     f"questions{unread}) | {opponents} | {c.get('rank', '?')} of {c.get('of', '?')} "
                     f"| {_interval(c.get('elo'))} | {c.get('wins', '?')} / {c.get('ties', '?')} / {c.get('losses', '?')} "
                     f"| {_interval(c.get('win_rate'), percent=True)} | {relative} |")
    return [*lines, ""]


def _quantization_code(run: FinishedRun) -> tuple[list[str], str]:
    q = run.recipe.quantization
    dtype = run.versions.get("compute_dtype") or ("float32" if q.compute_dtype == "auto" else q.compute_dtype)
    if q.bits == 16:
        return [], f"dtype=torch.{dtype}"
    if q.bits == 8:
        return ["quant = BitsAndBytesConfig(load_in_8bit=True)"], f"quantization_config=quant, dtype=torch.{dtype}"
    return [f'quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="{q.quant_type}",',
            f"                           bnb_4bit_use_double_quant={q.double_quant}, bnb_4bit_compute_dtype=torch.{dtype})"], \
        f"quantization_config=quant, dtype=torch.{dtype}"


def _auto_class(run: FinishedRun) -> str:
    """The Auto class for the base: the adapter's peft task type says causal or encoder-decoder."""
    return "AutoModelForSeq2SeqLM" if run.encoder_decoder else "AutoModelForCausalLM"


def _loading(run: FinishedRun) -> list[str]:
    m = run.recipe.model
    auto = _auto_class(run)
    base = f'f"{{RUN}}/{BASE_MODEL_DIR}"' if m.loader == FROM_CONFIG else repr(m.path)
    revision = f", revision={m.revision!r}" if m.revision and m.loader != FROM_CONFIG else ""
    remote = ", trust_remote_code=True" if m.trust_remote_code else ""
    quant, kwargs = _quantization_code(run)
    code = ["import torch", "from peft import PeftModel",
            f"from transformers import {auto}, AutoTokenizer" + (", BitsAndBytesConfig" if quant else ""), "",
            f"RUN = {str(run.path.resolve())!r}  # this directory", *quant,
            f"base = {auto}.from_pretrained({base}{revision}{remote}, {kwargs})",
            f'model = PeftModel.from_pretrained(base, f"{{RUN}}/{ADAPTER_DIR}")',
            f'tokenizer = AutoTokenizer.from_pretrained(f"{{RUN}}/{TOKENIZER_DIR}")']
    return ["## Load the adapter", "", "```python", *code, "```", "",
            f"Rerun this run: `qlorafx train {run.path.resolve() / RECIPE_FILE} output_dir=<new folder>`.", ""]


def _versions(run: FinishedRun) -> list[str]:
    names = ("python", "qlorafx", "torch", "transformers", "peft", "bitsandbytes", "accelerate")
    found = [f"{n} {run.versions[n]}" for n in names if run.versions.get(n)]
    return ["## Software", "", ", ".join(found) + " (from `versions.json`).", ""] if found else []


def model_card(run: FinishedRun, plot_name: str | None) -> str:
    r = run.recipe
    title = f"# {run.path.resolve().name}: a QLoRA adapter" if r.quantization.bits == 4 else f"# {run.path.resolve().name}: a LoRA adapter"
    lines = [*_front_matter(run), title, ""]
    if r.description:
        lines += [r.description, ""]
    lines += [f"LoRA adapter trained with qlorafx on {_base_model(run)}.", ""]
    for part in (_method(run), _data(run), _hyperparameters(run), _results(run, plot_name), _loading(run), _versions(run)):
        lines += part
    return "\n".join(lines).rstrip("\n") + "\n"
