"""A finished run, found and checked without torch, then loaded as it trained: quantized base + adapter.

Used by every command that reads a run (eval, generate, chat, merge): the directory must hold a
finished run (run.json with status finished), its recipe, adapter and tokenizer, and the base the
adapter was trained on (RUN/base_model for loader from_config, else the recipe's model.path).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlorafx.errors import UserError
from qlorafx.model import adapter_files
from qlorafx.train.run_dir import FINISHED_MARKER


class RunError(UserError):
    """The directory holds no finished run that can be read as asked."""


@dataclass(frozen=True)
class TrainedRun:
    path: Path
    recipe: Any  # qlorafx.recipe.schema.Recipe
    base: str  # local folder or hub id the adapter applies to
    status: dict
    encoder_decoder: bool = False  # a T5-style base: the prompt goes to the encoder

    @property
    def dataset(self):
        """The dataset whose format prompts are rendered in: the run's first."""
        return self.recipe.data.datasets[0]


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def finished_run(run_dir: str | Path) -> TrainedRun:
    """The run, or a RunError saying what is missing; reads files only."""
    from qlorafx.recipe.load import load_recipe

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"RUN_DIR {run_dir} is not a folder; give the output_dir of a finished `qlorafx train`")
    marker = run_dir / FINISHED_MARKER
    if not marker.is_file():
        raise RunError(f"{run_dir} holds no finished qlorafx run (no {FINISHED_MARKER}); "
                       "train it to the end first, or give another run directory")
    try:
        status = json.loads(marker.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunError(f"{marker} is not valid JSON ({err.msg}); the run directory is damaged") from None
    if not isinstance(status, dict) or status.get("status") != "finished":
        said = status.get("status") if isinstance(status, dict) else status
        raise RunError(f"{run_dir} holds an unfinished run ({FINISHED_MARKER} says {said!r}); resume or rerun it first")
    adapter = run_dir / "adapter"
    config = adapter_files.read_config(adapter, f"{run_dir}/adapter")
    if not (run_dir / "recipe.yaml").is_file():
        raise RunError(f"{run_dir}/recipe.yaml is missing: it says how the run was quantized and rendered its prompts")
    if not (run_dir / "tokenizer").is_dir():
        raise RunError(f"{run_dir}/tokenizer is missing: prompts must be tokenized as the run trained")
    recipe = load_recipe(run_dir / "recipe.yaml").recipe
    if recipe.model.loader == "from_config":
        base = str(run_dir / "base_model")
        if not (run_dir / "base_model" / "config.json").is_file():
            raise RunError(f"{run_dir}/base_model is missing: a from_config run keeps its random base there")
    else:
        base = recipe.model.path
    recorded = config.get("base_model_name_or_path")
    moved = recipe.model.loader == "from_config" and recorded and Path(recorded).name == "base_model" \
        and not Path(recorded).exists()  # the run directory itself was moved
    if not (adapter_files.same_base(recorded, base) or moved):
        raise RunError(f"the adapter in {adapter} was trained on {recorded}, but this run's base is {base}; "
                       f"it needs {recorded}")
    return TrainedRun(run_dir, recipe, base, status, encoder_decoder=config.get("task_type") == "SEQ_2_SEQ_LM")


def hub_arguments(recipe) -> dict:
    m = recipe.model
    return {"revision": m.revision, "trust_remote_code": m.trust_remote_code} if m.loader == "pretrained" else {}


def check_adapter_fits(run: TrainedRun) -> None:
    """The adapter's layer shapes against the base's config (no weights): another base is refused."""
    from transformers import AutoConfig

    from qlorafx.model.adapter import linear_layer_names
    from qlorafx.model.loaders import skeleton

    try:
        config = AutoConfig.from_pretrained(run.base, **hub_arguments(run.recipe))
    except (OSError, ValueError) as err:
        raise RunError(f"cannot load the config of the run's base {run.base}: {_first_line(err)}") from None
    frame = skeleton(config)
    names = set(linear_layer_names(frame))
    wrong = adapter_files.shape_mismatches(run.path / "adapter", {
        n: (mod.in_features, mod.out_features) for n, mod in frame.named_modules() if n in names})
    if wrong:
        raise RunError(f"the adapter in {run.path}/adapter does not fit the base {run.base}, so it was trained "
                       f"on another base: {', '.join(wrong[:3])}")


def load_quantized(run: TrainedRun):
    """The run's base, quantized as the recipe says, with the adapter on top, in eval mode."""
    from peft import PeftModel
    from transformers.utils import logging as hf_logging

    from qlorafx.model.loaders import load_weights
    from qlorafx.model.quantize import keep_weights_trainable_on_cpu, quantization_config, resolve_compute_dtype

    check_adapter_fits(run)
    hf_logging.disable_progress_bar()  # a weight-loading bar per call is noise on stderr
    recipe = run.recipe
    compute_dtype = resolve_compute_dtype(recipe.quantization.compute_dtype)
    try:
        base = load_weights(run.base, recipe, compute_dtype, quantization_config(recipe.quantization, compute_dtype))
    except OSError as err:
        raise RunError(f"cannot load the run's base {run.base}: {_first_line(err)}") from None
    # The layout training evaluated and sampled with: outputs match the run's own sample generation.
    keep_weights_trainable_on_cpu(base)
    return PeftModel.from_pretrained(base, run.path / "adapter").eval()
