"""Command-line overrides: ``a.b=value``, ``data.datasets.0.path=x``; values are YAML scalars or lists.

The first '=' splits path from value, so values may contain '='. A key that does not exist
yet is created here and judged by validation (which suggests the key meant); an index past
the end of a list, or a path through a plain value, is a problem at once.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from qlorafx.errors import Problem, shown
from qlorafx.recipe.sources import COMMAND_LINE, SourceMap


MAX_DEPTH = 20  # levels of a key path: far deeper than any recipe key, shallow enough for every recursive step


def _short(path: str) -> str:
    return path if len(path) <= 80 else f"{path[:60]}..."


class UnclosedValue(ValueError):
    """A value that opens a YAML list or mapping and does not close it."""


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as err:
        if text.lstrip().startswith(("[", "{")):  # meant as a list or mapping: most often the shell split it at a space
            kind, example = (("list", "[q_proj, v_proj]") if text.lstrip().startswith("[")
                             else ("mapping", "{path: train.jsonl, format: alpaca}"))
            raise UnclosedValue(f"{shown(text)} starts a YAML {kind} that does not close ({str(err).splitlines()[0]}); "
                                f"write it whole, e.g. {example}, and quote the whole override for the shell when it "
                                f"holds spaces: 'key={example}'") from None
        return text  # not YAML (e.g. an unbalanced quote in a prompt): take it as the string typed
    except (ValueError, RecursionError):  # an integer past 4,300 digits; nesting past the stack
        return text


def _set(data: dict[str, Any], keys: list[str], value: Any, created: list[str]) -> str | None:
    """Set data[k1][k2]... = value; the reason it cannot, or None. Appends the mappings it creates to ``created``."""
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit():
                return f"{'.'.join(keys[:depth]) or 'value'} is a list; index it by number, e.g. {'.'.join(keys[:depth])}.0"
            index = int(key)
            if index >= len(node):
                return f"index {index} is past the end of the list ({len(node)} item{'s' if len(node) != 1 else ''})"
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                if key not in node:
                    created.append(where)
                node = node.setdefault(key, {})
        else:
            return f"{'.'.join(keys[:depth])} holds a plain value, so {where} cannot be set below it"
    return None


def apply_overrides(data: dict[str, Any], overrides: list[str], sources: SourceMap, problems: list[Problem]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for override in overrides:
        path, sep, text = override.partition("=")
        keys = path.strip().split(".")
        if not sep or not path.strip() or not all(keys):
            shown = override if len(override) <= 80 else f"{override[:60]}..."
            problems.append(Problem(_short(path.strip()), f"override {shown!r} is not key.path=value (e.g. lora.r=32)",
                                    COMMAND_LINE))
            continue
        if len(keys) > MAX_DEPTH:
            problems.append(Problem(_short(path.strip()), f"override key is {len(keys)} levels deep; recipe keys are "
                                                          f"at most {MAX_DEPTH}", COMMAND_LINE))
            continue
        created: list[str] = []
        try:
            value = _parse_value(text)
        except UnclosedValue as err:
            problems.append(Problem(".".join(keys), str(err), COMMAND_LINE))
            continue
        reason = _set(data, keys, value, created)
        if reason:
            problems.append(Problem(".".join(keys), reason, COMMAND_LINE))
        else:  # a mapping the override created came from the command line too
            sources.overridden.update([*created, ".".join(keys)])
    return data
