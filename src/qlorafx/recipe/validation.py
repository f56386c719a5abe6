"""Pydantic's validation errors -> problems that say where, what was expected, and what to do."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from qlorafx.data.formats import FORMATS
from qlorafx.errors import Problem
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


def _unknown_key(loc: tuple, root: type[BaseModel] = Recipe) -> str:
    model = _model_at(loc, root)
    known = list(model.model_fields) if model else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "remove it"
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
    shown = repr(found) if not isinstance(found, (dict, list)) else type(found).__name__
    if len(shown) > 80:  # a report line, not an echo of a long value
        shown = f"{shown[:60]}... ({len(shown)} characters)"
    if kind == "union_tag_not_found":  # a dataset entry that is not a mapping
        return f"expected a dataset entry, a mapping such as {{path: train.jsonl, format: alpaca}}; found {shown}"
    return f"{msg[0].lower()}{msg[1:]}; found {shown}"


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
