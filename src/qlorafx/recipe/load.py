"""Recipe files -> a validated Recipe: extends, then overrides, then validation.

    YAML files --extends--> merged dict --overrides--> dict --paths--> dict --pydantic--> Recipe

Every problem found on the way is collected and raised together as one RecipeError, each
with the dotted key, the file and line (or 'command line') it came from, and a hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from qlorafx.errors import Problem
from qlorafx.recipe.errors import RecipeError
from qlorafx.recipe.overrides import apply_overrides
from qlorafx.recipe.paths import resolve_paths
from qlorafx.recipe.schema import Recipe
from qlorafx.recipe.sources import SourceMap
from qlorafx.recipe.validation import validation_problems
from qlorafx.recipe.yaml_source import YamlSource, read_yaml


@dataclass(frozen=True)
class LoadedRecipe:
    recipe: Recipe
    sources: SourceMap

    def to_yaml(self) -> str:
        """The resolved recipe: every key with its value, defaults included; reruns the same run."""
        return yaml.safe_dump(self.recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _extends_list(source: YamlSource) -> tuple[list[Path], list[Problem]]:
    value = source.data.get("extends")
    if value is None:
        return [], []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and "\0" not in i for i in items):
        return [], [Problem("extends", "expected a path or a list of paths to recipe fragments", source.where("extends"))]
    return [(source.path.parent / item).resolve() for item in items], []


def _layers(path: Path, chain: tuple[Path, ...], problems: list[Problem], via: str | None = None) -> list[YamlSource]:
    """The files to merge, parents first (depth first, in the order each extends lists them).

    ``via`` is the 'file:line' of the extends entry that named ``path``.
    """
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(path):], path))
        problems.append(Problem("extends", f"extends forms a cycle: {cycle}; remove one of these links", via or str(chain[-1])))
        return []
    source, found = read_yaml(path)
    problems += found
    if source is None:
        return []
    parents, found = _extends_list(source)
    problems += found
    layers: list[YamlSource] = []
    for index, parent in enumerate(parents):
        entry = f"extends.{index}" if f"extends.{index}" in source.lines else "extends"
        if not parent.is_file():
            what = "which is not a file" if parent.exists() else "which does not exist"
            problems.append(Problem("extends", f"extends names {parent}, {what}", source.where(entry)))
            continue
        layers += _layers(parent, (*chain, path), problems, source.where(entry))
    return [*layers, source]


def _clash(old: Any, new: Any, dotted: str = "") -> str | None:
    """The first dotted path where one side holds a mapping and the other a list (OmegaConf cannot merge them)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in new:
            if key in old:
                found = _clash(old[key], new[key], f"{dotted}.{key}" if dotted else str(key))
                if found is not None:
                    return found
        return None
    kinds = {type(v) for v in (old, new) if isinstance(v, (dict, list))}
    return dotted if len(kinds) == 2 else None


def _merge(layers: list[YamlSource], problems: list[Problem]) -> dict[str, Any]:
    """Deep merge, later files win; lists and scalars are replaced whole (OmegaConf's rules)."""
    merged = OmegaConf.create({})
    for layer in layers:
        data = {k: v for k, v in layer.data.items() if k != "extends"}
        try:
            merged = OmegaConf.merge(merged, OmegaConf.create(data))
        except OmegaConfBaseException as err:
            key = re.sub(r"\[(\d+)\]", r".\1", str(getattr(err, "full_key", "") or ""))
            problems.append(Problem(key, f"value cannot be used in a recipe: {str(err).splitlines()[0]}", layer.where(key)))
        except TypeError:  # OmegaConf cannot merge a mapping with a list
            key = _clash(OmegaConf.to_container(merged, resolve=False), data) or ""
            problems.append(Problem(key, "a list in one file and a mapping in another cannot be merged; "
                                         "write the same kind in both (a '- ' list item or key: value)", layer.where(key)))
    return OmegaConf.to_container(merged, resolve=False)  # no interpolation: values are literal


def _nul_bytes(value: Any, dotted: str = "") -> list[str]:
    """The dotted keys of the strings that hold a NUL character."""
    if isinstance(value, dict):
        return [key for k, v in value.items() for key in _nul_bytes(v, f"{dotted}.{k}" if dotted else str(k))]
    if isinstance(value, list):
        return [key for i, v in enumerate(value) for key in _nul_bytes(v, f"{dotted}.{i}")]
    return [dotted] if isinstance(value, str) and "\0" in value else []


def merged_yaml(path: str | Path, overrides: list[str] = ()) -> tuple[dict[str, Any], SourceMap, list[Problem]]:
    """Any qlorafx YAML (a recipe, a judge comparison) before validation: extends merged, overrides
    applied, paths as written; with the problems found on the way (a RecipeError when they stop it earlier)."""
    path = Path(path)
    problems: list[Problem] = []
    layers = _layers(path, (), problems)
    if problems:
        raise RecipeError(str(path), problems)
    seen: set[Path] = set()  # a file extended twice (a diamond) applies once, at its first place
    layers = [layer for layer in layers if not (layer.path in seen or seen.add(layer.path))]
    data = _merge(layers, problems)
    sources = SourceMap(layers)
    if problems:
        raise RecipeError(str(path), problems)
    data = apply_overrides(data, overrides, sources, problems)
    nul = [Problem(key, "holds a NUL character (\\0), which no path or text may hold; remove it", sources.where(key))
           for key in _nul_bytes(data)]
    if nul:  # before paths resolve: the OS refuses such a path outright
        raise RecipeError(str(path), [*problems, *nul])
    return data, sources, problems


def merged(path: str | Path, overrides: list[str] = (), resolve_output_dir: bool = True
           ) -> tuple[dict[str, Any], SourceMap, list[Problem]]:
    """The recipe's data before validation: as merged_yaml, with its paths absolute (output_dir too,
    unless told not to)."""
    data, sources, problems = merged_yaml(path, overrides)
    return resolve_paths(data, sources, output_dir=resolve_output_dir), sources, problems


def load_recipe(path: str | Path, overrides: list[str] = ()) -> LoadedRecipe:
    data, sources, problems = merged(path, overrides)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:  # reported together with any override problems
        problems += validation_problems(err, sources)
    if problems:
        raise RecipeError(str(path), problems)
    return LoadedRecipe(recipe, sources)
