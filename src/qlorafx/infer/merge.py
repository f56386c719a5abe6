"""A run's adapter merged into its base, unquantized, then proven: the merged model, reloaded from
disk, must give the logits of base + adapter (unmerged, same dtype) on sample prompts.

    plan (no torch: the run, its adapter and base, the output folder) -> load base + adapter ->
    reference logits -> merge -> save -> reload -> compare -> report

A merge that silently wrote the base (the failure users of 4-bit adapters meet) differs from
base + adapter by the adapter's whole effect, which the report prints next to the difference.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from qlorafx.errors import UserError
from qlorafx.model.architecture import auto_class, is_encoder_decoder

DTYPES = ("bfloat16", "float16", "float32")
# Largest allowed |merged - unmerged| logit, relative to the largest |logit|: rounding the merged
# weights to the dtype (W + BA is stored, not W and BA apart) is all that may differ.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
PROMPTS = ("### Instruction:\nName three primary colors.\n\n### Response:\n",
           "The quick brown fox jumps over the lazy dog.", "1, 2, 3, 4,")


class MergeError(UserError):
    """The run, its adapter or the output folder cannot be merged as asked."""


class MergeCheckError(Exception):
    """The merged model does not reproduce base + adapter; nothing was left in the output folder."""


@dataclass(frozen=True)
class Plan:
    run_dir: Path
    out: Path
    base: str  # local folder or hub id
    dtype: str
    recipe: object
    sample_prompt: str | None
    status: dict = field(default_factory=dict)  # run.json: the base the run trained on (its hub commit)


@dataclass(frozen=True)
class Report:
    largest_difference: float  # merged (reloaded) vs base + adapter
    loads_with: str  # the transformers Auto class that loads the merged model
    adapter_effect: float  # base + adapter vs base alone
    tolerance: float
    out: Path


def plan(run_dir: Path, out: Path, dtype: str | None = None) -> Plan:
    """Every check that needs no weights: a finished run with an adapter, its base, a free output."""
    from qlorafx.report.run import trained_run
    from qlorafx.train.run_dir import cannot_be_made

    run = trained_run(run_dir)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MergeError(f"--out {out} is a file; the merged model is a folder (weights, config, tokenizer): "
                         "give the path of a new folder")
    if out.exists() and any(out.iterdir()):
        raise MergeError(f"--out {out} is a folder that is not empty; merge never overwrites: give a new folder")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    unwritable = f"{blocker} is a file" if blocker is not None else cannot_be_made(out)
    if unwritable:  # found now, not by save_pretrained after the merge (a traceback then)
        raise MergeError(f"--out {out} cannot be made: {unwritable}; give a new folder where you can write")
    return Plan(run.path, out, run.base, dtype or _stored_dtype(run.base), run.recipe, run.status.get("sample_prompt"),
                run.status)


def _stored_dtype(base: str) -> str:
    """The dtype the base checkpoint is stored in (no precision lost), float32 when unknown."""
    config = Path(base) / "config.json"
    if config.is_file():
        data = json.loads(config.read_text(encoding="utf-8"))
        stored = str(data.get("dtype") or data.get("torch_dtype") or "")
        if stored in DTYPES:
            return stored
    return "float32"


def merge_adapter(model):
    """The merge itself, peft's: base weights += scale * B @ A, adapter layers removed."""
    return model.merge_and_unload()


def chat_template(recipe, tokenizer) -> str | None:
    """The template the run rendered chats with: a dataset's named chat_template, else the tokenizer's."""
    from qlorafx.data.chat_templates import CHAT_TEMPLATES

    named = [d.chat_template for d in recipe.data.datasets if getattr(d, "chat_template", None)]
    return CHAT_TEMPLATES.get(named[0]) if named else getattr(tokenizer, "chat_template", None)


def logits(model, batch):
    """The model's logits on a batch; an encoder-decoder model's decoder is fed the prompts too,
    which is as good a test input as any (both models see exactly the same tokens)."""
    if is_encoder_decoder(model.config):
        batch = {**batch, "decoder_input_ids": batch["input_ids"], "decoder_attention_mask": batch["attention_mask"]}
    return model(**batch).logits.float()


def run(p: Plan, log=print) -> Report:
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoTokenizer

    from qlorafx.infer.trained_run import check_adapter_fits, hub_arguments
    from qlorafx.report.run import FinishedRun
    from qlorafx.run_files import ADAPTER_DIR, TOKENIZER_DIR

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading and saving bars for each of three loads are noise here
    dtype = getattr(torch, p.dtype)
    trained = FinishedRun(p.run_dir, p.recipe, p.base, p.status)
    hub = hub_arguments(trained)
    check_adapter_fits(trained)

    tokenizer = AutoTokenizer.from_pretrained(p.run_dir / TOKENIZER_DIR)
    tokenizer.chat_template = chat_template(p.recipe, tokenizer)
    auto = auto_class(AutoConfig.from_pretrained(p.base, **hub))
    base = auto.from_pretrained(p.base, dtype=dtype, **hub)
    model = PeftModel.from_pretrained(base, p.run_dir / ADAPTER_DIR).eval()
    prompts = [p.sample_prompt, *PROMPTS] if p.sample_prompt else list(PROMPTS)
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        want = logits(model, batch)
        with model.disable_adapter():
            effect = (logits(model, batch) - want).abs().max().item()

    created = not p.out.exists()
    merged = merge_adapter(model)
    merged.save_pretrained(p.out)
    tokenizer.save_pretrained(p.out)
    readable_as_umask(p.out)
    del merged, model, base
    with torch.no_grad():
        got = logits(auto.from_pretrained(p.out, dtype=dtype).eval(), batch)
    difference = (got - want).abs().max().item()
    tolerance = TOLERANCE[p.dtype] * max(1.0, want.abs().max().item())
    report = Report(difference, auto.__name__, effect, tolerance, p.out)
    if not difference <= tolerance:  # also catches NaN
        _remove(p.out, created)
        raise MergeCheckError(
            f"the merged model's logits differ from base + adapter by up to {difference:.3g} (allowed {tolerance:.3g}; "
            f"the adapter's own effect is {effect:.3g}), so the merge is wrong; nothing was kept in {p.out}")
    return report


def readable_as_umask(folder: Path) -> None:
    """safetensors writes its file through a private temporary file (mode 0600); a merged model is for sharing
    and serving, so its files get the mode any new file gets here (0644 under the usual umask 022)."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~umask)


def _remove(out: Path, created: bool) -> None:
    if created:
        shutil.rmtree(out)
    else:  # the folder was there, empty: leave it empty
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
