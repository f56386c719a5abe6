"""Every check `train` makes short of loading weights, made without torch: what `qlorafx validate` runs.

The recipe itself was checked when it loaded (schema, registry names, cross-field rules). Here:
the data, read in full and turned into conversations as training will; the model's config, built
by transformers' own config class (qlorafx.model.config_check); what the recipe asks of that model
(max_length, LoRA targets and layers); the validation split against the examples there are; the
metrics backends' packages; and the output directory as `train` (with the same flags) would find it.

What cannot be checked without torch, a tokenizer or the hub is listed as a note, so `ok` never
claims more than was checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qlorafx.errors import Problem, UserError


@dataclass
class Preflight:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not checked, and why


def _problem(loaded, key: str, message: str) -> Problem:
    return Problem(key, message, loaded.sources.where(key))


def _model_config(loaded, found: Preflight):
    """The model's config as train builds it, or None (with a problem or a note saying why)."""
    from qlorafx.model.config_check import ModelConfigError
    from qlorafx.model.loaders import MODEL_LOADERS, PRETRAINED, ModelSourceError, NotCachedLocally

    recipe = loaded.recipe
    m = recipe.model
    if m.trust_remote_code:
        found.notes.append("the model's config, data.max_length and the LoRA targets: with trust_remote_code the "
                           "config class is the model's own code, which validate does not run; train checks them")
        return None
    loader = MODEL_LOADERS.get(m.loader)
    try:
        if m.loader == PRETRAINED:
            return loader.config(recipe, None, local_only=True)
        if m.tokenizer and not Path(m.tokenizer).exists():  # a hub tokenizer: validate stays offline, and the
            found.notes.append(f"model.tokenizer: {m.tokenizer} is a hub id, and validate stays offline; train "
                               "loads it")
            return loader.config(recipe, None)               # config's checks do not depend on its vocabulary
        return loader.config(recipe, loader.tokenizer(recipe))
    except ModelConfigError as err:
        found.problems += [_problem(loaded, p.key, p.message) for p in err.problems]
    except ModelSourceError as err:
        found.problems.append(_problem(loaded, err.key, err.detail))
    except NotCachedLocally as missing:
        shipped = _shipped_config(m)
        if shipped is not None:
            return shipped
        found.notes.append(str(missing))
    return None


def _shipped_config(model):
    """The config of a bundled recipe's hub model as qlorafx ships it (configs/architectures/, estimate's
    offline copy), at the hub's default revision; None for any other model."""
    import json

    from transformers import AutoConfig

    from qlorafx.estimate.configs import shipped_path

    path = shipped_path(model.path) if model.revision is None else None
    if path is None:
        return None
    fields = json.loads(path.read_text(encoding="utf-8"))
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


ACTIVATION_KEYS = ("hidden_act", "hidden_activation", "activation_function", "feed_forward_proj", "dense_act_fn")


def _model_checks(loaded, config, found: Preflight) -> None:
    from qlorafx.data.build import encoder_decoder_problems
    from qlorafx.model.adapter import LoraOptionError, check_lora_names
    from qlorafx.model.architecture import has_language_model, is_encoder_decoder
    from qlorafx.model.config_check import layers_past_the_end, recipe_fits_config
    from qlorafx.model.layer_plan import linear_layer_names
    from qlorafx.model.loaders import PRETRAINED

    recipe = loaded.recipe
    if not has_language_model(config):
        kind = "sequence-to-sequence" if is_encoder_decoder(config) else "causal"
        key = "model.path" if recipe.model.loader == PRETRAINED else "model.config.model_type"
        found.problems.append(_problem(loaded, key, (
            f"transformers has no {kind} language model for a {config.model_type} config, so train cannot build it; "
            "qlorafx finetunes language models such as llama, mistral, qwen2, gpt2 or t5")))
        return
    found.problems += [_problem(loaded, p.key, p.message) for p in recipe_fits_config(recipe, config)]
    # what only the built model tells (its module names, the activations its code knows): said, not claimed
    if recipe.lora.modules_to_save:
        found.notes.append("lora.modules_to_save: module names are known only once the model is built; train checks "
                           "them on its skeleton before any weight loads")
    activations = [k for k in recipe.model.config if k in ACTIVATION_KEYS]
    if activations:
        found.notes.append(f"model.config.{activations[0]}: the activations transformers' model code knows are known "
                           "only with torch; train checks it on the model's skeleton before any weight loads")
    if is_encoder_decoder(config):
        found.problems += [_problem(loaded, key, message) for key, message in encoder_decoder_problems(recipe)]
    names = linear_layer_names(config)
    if names is None:
        found.problems += [_problem(loaded, p.key, p.message) for p in layers_past_the_end(recipe, config)]
        found.notes.append(f"lora.target_modules: a {config.model_type} model's layer names are known only once it "
                           "is built; train checks them on its skeleton before any weight loads")
        return
    try:
        check_lora_names(names, recipe.lora)
    except LoraOptionError as err:
        found.problems.append(_problem(loaded, err.key, err.detail))


def _output_dir(loaded, overwrite: bool, resume: bool | str, force: bool, found: Preflight) -> None:
    from qlorafx.train import checkpoints, run_dir

    out = Path(loaded.recipe.output_dir)
    try:
        if resume:
            checkpoints.resume_point(out, resume if isinstance(resume, str) else None, force, loaded.to_yaml())
        else:
            run_dir.prepare(out, overwrite, dry_run=True)
    except checkpoints.AlreadyFinished as done:
        found.notes.append(f"output_dir: {done}; train --resume would stop at once")
    except UserError as err:
        found.problems.append(_problem(loaded, "output_dir", str(err).removeprefix("output_dir ")))


def preflight(loaded, overwrite: bool = False, resume: bool | str = False, force: bool = False) -> Preflight:
    from qlorafx.data.build import read_datasets, split_problems
    from qlorafx.model.architecture import is_encoder_decoder
    from qlorafx.train.backends import backend_problems

    found = Preflight()
    config = _model_config(loaded, found)
    if config is not None:
        _model_checks(loaded, config, found)
    data = read_datasets(loaded.recipe, loaded.sources, encoder_decoder=config is not None and is_encoder_decoder(config))
    found.problems += data.problems + split_problems(loaded.recipe, loaded.sources, data)
    if any(n is None for n in data.examples) and not data.problems:
        found.notes.append("hub datasets: train and preprocess load them from the hub")
    found.notes.append("examples longer than data.max_length: that needs the tokenizer (qlorafx preprocess "
                       "counts them)")
    found.problems += backend_problems(loaded.recipe, loaded.sources)
    _output_dir(loaded, overwrite, resume, force, found)
    return found
