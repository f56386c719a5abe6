"""Pydantic's validation errors -> problems that say where, what was expected, and what to do."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from qlorafx.data.formats import FORMATS
from qlorafx.errors import Problem, shown
from qlorafx.registry import UnknownKeyError
from qlorafx.recipe.schema import Recipe
from qlorafx.recipe.sources import SourceMap


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold, looking through list[...] and unions."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (list, typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _model_at(loc: tuple, root: type[BaseModel] = Recipe) -> type[BaseModel] | None:
    """The section model that holds the key at ``loc`` (list indices and the keys of a mapping
    of sections skipped; a dataset's format tag in ``loc`` picks that format's section)."""
    model: type[BaseModel] | None = root
    choices: list[type[BaseModel]] = []
    in_mapping = False
    for part in loc[:-1]:
        if isinstance(part, int) or model is None or in_mapping:
            in_mapping = False
            continue
        if part in FORMATS and choices:
            model = FORMATS.get(part).section
            continue
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        in_mapping = typing.get_origin(annotation) is dict  # e.g. endpoints: {name: {...}}: skip the name
        choices = _models_in(typing.get_args(annotation)[1] if in_mapping else annotation) if field else []
        model = choices[0] if choices else None
    return model


# What other tools call qlorafx's keys (peft's LoraConfig, transformers' TrainingArguments and
# BitsAndBytesConfig, common finetuning scripts): a user who writes one is pointed to the key.
ALIASES = {
    "rank": "lora.r", "lora_r": "lora.r", "lora_rank": "lora.r", "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout", "lora_target_modules": "lora.target_modules", "target": "lora.target_modules",
    "learning_rate": "optimizer.lr", "optim": "optimizer.name", "optimizer": "optimizer.name",
    "lr_scheduler_type": "scheduler.name", "lr_scheduler": "scheduler.name", "scheduler": "scheduler.name",
    "num_train_epochs": "training.epochs", "num_epochs": "training.epochs",
    "per_device_train_batch_size": "training.micro_batch_size", "batch_size": "training.micro_batch_size",
    "gradient_accumulation_steps": "training.grad_accum", "gradient_accumulation": "training.grad_accum",
    "logging_steps": "logging.every", "save_steps": "training.save_every", "eval_steps": "training.eval_every",
    "max_seq_length": "data.max_length", "max_seq_len": "data.max_length", "sequence_len": "data.max_length",
    "cutoff_len": "data.max_length", "model_max_length": "data.max_length", "source_max_len": "data.max_length",
    "model_name_or_path": "model.path", "base_model": "model.path", "model_name": "model.path",
    "load_in_4bit": "quantization.bits", "load_in_8bit": "quantization.bits",
    "bnb_4bit_quant_type": "quantization.quant_type", "bnb_4bit_use_double_quant": "quantization.double_quant",
    "bnb_4bit_compute_dtype": "quantization.compute_dtype", "dataset": "data.datasets", "datasets": "data.datasets",
}


def _sections(model: type[BaseModel], at: str = "") -> dict[str, list[str]]:
    """Every key of the recipe -> the sections that hold it (dotted; a dataset entry as data.datasets.N)."""
    found: dict[str, list[str]] = {}
    for name, info in model.model_fields.items():
        found.setdefault(name, []).append(at)
        inner = f"{at}.{name}" if at else name
        if typing.get_origin(info.annotation) is list or name == "datasets":
            inner += ".N"
        for sub in _models_in(info.annotation):
            for key, places in _sections(sub, inner).items():
                found.setdefault(key, []).extend(p for p in places if p not in found.get(key, []))
    if model is Recipe:  # the dataset entries: each format's own section
        for key in FORMATS.keys():
            for name, places in _sections(FORMATS.get(key).section, "data.datasets.N").items():
                found.setdefault(name, []).extend(p for p in places if p not in found[name])
    return found


def _where_else(key: str, here: str, root: type[BaseModel]) -> str | None:
    """Where a key that is unknown here does belong: another section of the recipe, or what qlorafx calls it."""
    if root is not Recipe:
        return None
    places = [p for p in _sections(Recipe).get(key, []) if p != here]
    if places:
        named = " and ".join(p or "the top level" for p in places)
        return f"{key} is a key of {named}: move it there ({places[0] + '.' if places[0] else ''}{key})"
    meant = ALIASES.get(key)
    if meant:
        section, _, leaf = meant.rpartition(".")
        return f"did you mean {leaf!r}?" if section == here else f"did you mean {meant}? ({key} is what other tools call it)"
    everywhere = _sections(Recipe)
    close = difflib.get_close_matches(key, list(everywhere), n=1, cutoff=0.8)
    if close:
        place = everywhere[close[0]][0]
        return f"did you mean {place + '.' if place else ''}{close[0]}?"
    return None


def _unknown_key(loc: tuple, root: type[BaseModel] = Recipe) -> str:
    model = _model_at(loc, root)
    known = list(model.model_fields) if model else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    here = re.sub(r"\.\d+(\.|$)", r".N\1", _dotted(loc[:-1]))
    # a key that is exactly a key of another section (or another tool's name for one) is no misspelling of a
    # key here: `lr` at the top level belongs to optimizer, not 'lora'; training.warmup_steps to scheduler
    elsewhere = _where_else(str(loc[-1]), here, root)
    if elsewhere and not elsewhere.startswith("did you mean"):
        hint = elsewhere
    elif ALIASES.get(str(loc[-1])) and root is Recipe:
        hint = elsewhere
    else:
        hint = f"did you mean {close[0]!r}?" if close else (elsewhere or "remove it")
    listing = f" (known keys here: {', '.join(known)})" if known else ""
    return f"unknown key; {hint}{listing}"


def _message(error: dict, root: type[BaseModel] = Recipe) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return _unknown_key(error["loc"], root)
    if kind == "missing":
        return "required key is missing; add it"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "union_tag_invalid":  # a dataset's format that no format section answers to
        return str(UnknownKeyError(FORMATS.kind, str(error["ctx"]["tag"]), FORMATS.keys()))
    found = error.get("input")
    # as the user wrote it, in YAML's words (true, null, 'x'), never Python's (True, None, dict)
    seen = {dict: "a mapping", list: "a list"}.get(type(found)) or shown(found)
    if len(seen) > 80:  # a report line, not an echo of a long value
        seen = f"{seen[:60]}... ({len(seen)} characters)"
    if kind == "union_tag_not_found":  # a dataset entry that is not a mapping
        return f"expected a dataset entry, a mapping such as {{path: train.jsonl, format: alpaca}}; found {seen}"
    msg = re.sub(r" or instance of \w+", "", msg)  # a section's class name says nothing to the user
    return f"{msg[0].lower()}{msg[1:]}; found {seen}"


UNION_TAGS = {"str", "int", "float", "bool", "none"}


def _is_key(loc: tuple, i: int) -> bool:
    # pydantic adds a union member's name to loc (e.g. 'str', 'list[str]', or a dataset's format
    # tag right after its list index); those are not keys
    part = loc[i]
    if not isinstance(part, str):
        return True
    if part in FORMATS and i > 0 and isinstance(loc[i - 1], int):
        return False
    return not ("[" in part or part in UNION_TAGS)


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for i, p in enumerate(loc) if _is_key(loc, i))


def _filed(path: str, message: str) -> list[tuple[str, str]]:
    """A rule across sections raises lines of 'key.path: message'; each is filed under its key."""
    if path:
        return [(path, message)]
    lines = [re.match(r"([a-z_]+(?:\.[a-z0-9_]+)+): (.*)", line, re.S) for line in message.split("\n")]
    if lines and all(lines):
        return [(m.group(1), m.group(2)) for m in lines]
    return [(path, message)]


def validation_problems(err: ValidationError, sources: SourceMap, root: type[BaseModel] = Recipe) -> list[Problem]:
    """One problem per key; a value that fits none of a union's choices gets them joined with 'or'.
    ``root`` is the model validated (a Recipe, or another qlorafx YAML's top-level model)."""
    messages: dict[str, list[str]] = {}
    for error in err.errors():
        loc = (*error["loc"], "format") if error["type"] == "union_tag_invalid" else error["loc"]
        for path, message in _filed(_dotted(loc), _message(error, root)):
            found = messages.setdefault(path, [])
            if message not in found:
                found.append(message)
    problems = []
    for path, texts in messages.items():
        if len(texts) > 1:
            tail = texts[0].rpartition("; found ")[2]
            texts = [" or ".join(t.rpartition("; found ")[0] or t for t in texts) + f"; found {tail}"]
        problems.append(Problem(path, texts[0], sources.where(path)))
    return problems
