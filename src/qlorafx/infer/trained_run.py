"""A finished run's model, loaded as it trained: the quantized base with the adapter on top.

The run itself is read and checked without torch by report/run.py (trained_run): eval, generate,
chat, merge and serve refuse a run that cannot be loaded before any weight loads.
"""

from __future__ import annotations

from qlorafx.model import adapter_files
from qlorafx.model.loaders import PRETRAINED
from qlorafx.report.run import FinishedRun, RunError
from qlorafx.run_files import ADAPTER_DIR


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def hub_arguments(run: FinishedRun) -> dict:
    """How to load the run's base from the hub: at the commit it trained on (run.json), with the recipe's
    trust_remote_code."""
    m = run.recipe.model
    return {"revision": run.revision, "trust_remote_code": m.trust_remote_code} if m.loader == PRETRAINED else {}


def check_adapter_fits(run: FinishedRun) -> None:
    """The adapter's layer shapes against the base's config (no weights): another base is refused."""
    from transformers import AutoConfig

    from qlorafx.model.adapter import layer_shape, linear_layer_names
    from qlorafx.model.loaders import skeleton

    try:
        config = AutoConfig.from_pretrained(run.base, **hub_arguments(run))
    except (OSError, ValueError) as err:
        raise RunError(f"cannot load the config of the run's base {run.base}: {_first_line(err)}") from None
    frame = skeleton(config)
    names = set(linear_layer_names(frame))
    wrong = adapter_files.shape_mismatches(run.path / ADAPTER_DIR, {
        n: layer_shape(mod) for n, mod in frame.named_modules() if n in names})
    if wrong:
        raise RunError(f"the adapter in {run.path / ADAPTER_DIR} does not fit the base {run.base}, so it was trained "
                       f"on another base: {', '.join(wrong[:3])}")


def load_quantized(run: FinishedRun):
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
        base = load_weights(run.base, recipe, compute_dtype, quantization_config(recipe.quantization, compute_dtype),
                            revision=run.revision)
    except OSError as err:
        raise RunError(f"cannot load the run's base {run.base}: {_first_line(err)}") from None
    # The layout training evaluated and sampled with: outputs match the run's own sample generation.
    keep_weights_trainable_on_cpu(base)
    return PeftModel.from_pretrained(base, run.path / ADAPTER_DIR).eval()
