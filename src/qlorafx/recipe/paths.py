"""Relative paths in a recipe are relative to the file that wrote them (the current folder for
command-line overrides), so a recipe and its data can move together. output_dir is relative
to the current folder, where the user runs. All come out absolute, so the saved recipe reruns
from anywhere, except what is not a local path but reads as a hub id (a model id; a dataset
id such as tatsu-lab/alpaca), which stays as written.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable

from qlorafx.data.sources import looks_like_hub_id

from qlorafx.recipe.sources import SourceMap


def _absolute(value: Any, base: Path, hub_id: Callable[[str], bool]) -> Any:
    if not isinstance(value, str) or not value or os.path.isabs(value):
        return value
    candidate = (base / os.path.expanduser(value)).resolve()
    # what is not there locally but reads as a hub id stays as written
    return value if (not candidate.exists() and hub_id(value)) else str(candidate)


def resolve_paths(data: dict[str, Any], sources: SourceMap, output_dir: bool = True) -> dict[str, Any]:
    data = copy.deepcopy(data)
    model = data.get("model")
    if isinstance(model, dict):
        for key in ("path", "tokenizer"):
            if key in model:
                model[key] = _absolute(model[key], sources.base_dir(f"model.{key}"), hub_id=lambda v: True)
    lora = data.get("lora")
    if isinstance(lora, dict) and "init_from" in lora:  # an adapter folder: always a local path
        lora["init_from"] = _absolute(lora["init_from"], sources.base_dir("lora.init_from"), hub_id=lambda v: False)
    datasets = data.get("data", {}).get("datasets") if isinstance(data.get("data"), dict) else None
    if isinstance(datasets, list):
        for i, dataset in enumerate(datasets):
            if isinstance(dataset, dict) and "path" in dataset:
                dataset["path"] = _absolute(dataset["path"], sources.base_dir(f"data.datasets.{i}.path"), looks_like_hub_id)
    if output_dir and "output_dir" in data:
        data["output_dir"] = _absolute(data["output_dir"], Path.cwd(), hub_id=lambda v: False)
    return data
