"""A model's config, checked by transformers' own config class before any weight loads.

transformers 5 config classes are strict dataclasses: a value of the wrong type, or one their
``validate_architecture`` refuses (a hidden size not divisible by the heads), fails when the
config is built. Keys they do not know they keep as plain attributes, silently: a misspelt
``hiden_size`` would leave the default 4096 in place. So a key the class leaves over is reported
here, with the field it probably meant.

The config classes need no torch: ``qlorafx validate`` runs them in transformers' torch-free
mode (qlorafx.cli.main), `train` and the commands that load weights run the same code with torch.
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from qlorafx.errors import UserError, shown


@dataclass(frozen=True)
class ConfigProblem:
    key: str  # dotted recipe key, e.g. model.config.hidden_size
    message: str


class ModelConfigError(UserError):
    """The model's config cannot be built as the recipe asks; one line per problem."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.key}: {p.message}" for p in problems))


def _close(word: str, choices) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return found[0] if found else None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def config_class(model_type: Any, key: str = "model.config.model_type"):
    """transformers' config class for ``model_type``, or a ModelConfigError with a did-you-mean."""
    from transformers import CONFIG_MAPPING

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        close = _close(str(model_type), CONFIG_MAPPING.keys())
        hint = f"did you mean {close!r}?" if close else "check the spelling against the model's config.json"
        import transformers

        raise ModelConfigError([ConfigProblem(key, f"unknown model type {model_type!r}: transformers "
                                                   f"{transformers.__version__} has no such config class; {hint}")])
    return CONFIG_MAPPING[model_type]


def _known_keys(cls) -> list[str]:
    return [f.name for f in fields(cls) if not f.name.startswith("_")] + list(getattr(cls, "attribute_map", {}))


def _read_by_model_code(cls, key: str) -> bool:
    """Whether the architecture's modeling code reads ``key`` from its config although the class does not
    declare it (T5 reads ``config.decoder_start_token_id``): the source is read as text, nothing imported."""
    module = sys.modules.get(cls.__module__)
    folder = Path(module.__file__).parent if module is not None and getattr(module, "__file__", None) else None
    if folder is None:
        return False
    read = re.compile(rf"\bconfig\.{re.escape(key)}\b|getattr\(\s*(?:self\.)?config\s*,\s*[\"']{re.escape(key)}[\"']")
    return any(read.search(path.read_text(encoding="utf-8", errors="replace")) for path in folder.glob("modeling_*.py"))


def _refusal(err: Exception, cls, prefix: str) -> ConfigProblem:
    """transformers' (huggingface_hub's strict dataclass) refusal as a problem filed under the field it names."""
    text = str(err)
    field = re.search(r"Validation error for field '(\w+)'", text)
    reason = _first_line(err.__cause__) if err.__cause__ is not None else _first_line(err)
    if field:
        return ConfigProblem(f"{prefix}.{field.group(1)}", f"transformers' {cls.__name__} refuses it: {reason}")
    return ConfigProblem(prefix, f"transformers' {cls.__name__} refuses these values: {reason}")


def build_config(model_type: Any, user_fields: dict[str, Any], defaults: dict[str, Any] | None = None,
                 prefix: str = "model.config"):
    """The config transformers builds from the recipe's ``model.config`` (``defaults`` fill what the user
    left out, e.g. the tokenizer's vocabulary size); every problem at once as a ModelConfigError."""
    cls = config_class(model_type, f"{prefix}.model_type")
    values = {**(defaults or {}), **user_fields}
    problems = []
    try:
        config = cls(**values)
    except Exception as err:  # the strict dataclass raises its own types; TypeError/ValueError from __post_init__
        raise ModelConfigError([_refusal(err, cls, prefix)]) from None
    # keys the class did not take: set as plain attributes, where nothing reads them (a key its __post_init__
    # consumes, e.g. rope_theta, is not left as an attribute; one it sets itself is on a config built without it;
    # one the model's code reads, e.g. T5's decoder_start_token_id, is used all the same)
    try:
        own = set(vars(cls(**defaults or {})))
    except Exception:  # the defaults alone do not build: the fields and aliases still tell
        own = set()
    for key in user_fields:
        if key in vars(config) and key not in own and key not in _known_keys(cls) and not _read_by_model_code(cls, key):
            close = _close(key, _known_keys(cls))
            hint = f"did you mean {close!r}?" if close else f"check the name against transformers' {cls.__name__}"
            problems.append(ConfigProblem(f"{prefix}.{key}", f"not a field of transformers' {cls.__name__}, so "
                                                             f"nothing would read it; {hint}"))
    if problems:
        raise ModelConfigError(problems)
    return config


def layer_count(config) -> int | None:
    """How many numbered blocks the model has (for an encoder-decoder, the larger stack)."""
    counts = [getattr(config, name, None) for name in ("num_hidden_layers", "num_decoder_layers")]
    counts = [c for c in counts if isinstance(c, int)]
    return max(counts) if counts else None


STRETCHING_ROPE = ("linear", "dynamic", "yarn", "longrope")  # rope types whose factor stretches the positions


def position_limit(config) -> int | None:
    """The longest sequence the model's position embeddings cover; None when it has no fixed limit (T5).
    A RoPE scaling factor stretches it (vicuna-7b-v1.5-16k: 4096 positions, linear factor 4, 16k tokens);
    with one set of RoPE parameters per layer type, the least stretched one decides."""
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    rope = getattr(config, "rope_parameters", None)
    sets = ([rope] if "rope_type" in rope or "type" in rope else [v for v in rope.values() if isinstance(v, dict)]
            ) if isinstance(rope, dict) else []
    stretched = []
    for params in sets:
        kind, factor = params.get("rope_type", params.get("type")), params.get("factor")
        if kind in STRETCHING_ROPE and isinstance(factor, (int, float)) and factor > 1:
            original = params.get("original_max_position_embeddings")
            stretched.append(max(limit, int((original if isinstance(original, int) else limit) * factor)))
        else:
            stretched.append(limit)
    return min(stretched) if stretched else limit


def _limit_source(config, limit: int) -> str:
    own = config.max_position_embeddings
    return "max_position_embeddings" if limit == own else f"max_position_embeddings {own}, stretched by its RoPE scaling"


# config.layer_types entries that attend (a mask keeps packed examples apart there) or mix nothing along the sequence
MASKABLE_LAYERS = {"full_attention", "sliding_attention", "chunked_attention", "attention", "mlp", "moe"}


def recurrent_layers(config) -> list[str]:
    """The layer types of ``config`` that carry a state along the sequence (linear attention, Mamba, hybrid
    blocks): no attention mask reaches them, so packed examples would read each other through them."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return sorted(set(map(str, getattr(text, "layer_types", None) or ())) - MASKABLE_LAYERS)


def recipe_fits_config(recipe, config) -> list[ConfigProblem]:
    """Recipe settings that this model cannot honour, found from its config alone."""
    problems = []
    recurrent = recurrent_layers(config)
    if recipe.data.packing and recurrent and not getattr(config, "is_encoder_decoder", False):
        problems.append(ConfigProblem("data.packing", (
            f"true, but this {config.model_type} model has {', '.join(recurrent)} layers, which carry their state "
            "from one packed example into the next (no attention mask reaches them); set data.packing: false")))
    limit = position_limit(config)
    if limit is not None and recipe.data.max_length > limit:
        problems.append(ConfigProblem("data.max_length", (
            f"{recipe.data.max_length} tokens, but this {config.model_type} model has position embeddings for "
            f"{limit} ({_limit_source(config, limit)}); set data.max_length to {limit} or less")))
    return problems


def layers_past_the_end(recipe, config) -> list[ConfigProblem]:
    """lora.layers_to_transform past the model's last layer, from the config's layer count (for a model
    whose layer names the config alone does not give)."""
    count, wanted = layer_count(config), recipe.lora.layers_to_transform
    absent = [i for i in wanted or [] if count is not None and i >= count]
    if not absent:
        return []
    return [ConfigProblem("lora.layers_to_transform", f"{shown(absent)} names layers this model does not have: it has "
                                                      f"{count} layers, numbered 0 to {count - 1}")]
