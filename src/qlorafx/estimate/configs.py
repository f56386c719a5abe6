"""The model config an estimate reads, found without the hub where possible.

An architecture's numbers are a few lines of its config.json; qlorafx ships those of the bundled
recipes' models in configs/architectures/<org>/<name>.json, so that `qlorafx estimate` plans a GPU
run from a laptop with no network and no tokenizer. Order: a local folder (the real config), the
shipped copy (for a hub id at its default revision), then the hub through the model loader, which
fails in seconds when the hub is out of reach (qlorafx.hub).
"""

from __future__ import annotations

import json
from pathlib import Path

from qlorafx.bundled import bundled_dir
from qlorafx.model.loaders import PRETRAINED

FOLDER = "architectures"


def shipped_path(model_id: str) -> Path | None:
    """configs/architectures/<org>/<name>.json for a hub id qlorafx ships the config of."""
    from qlorafx.data.sources import looks_like_hub_id

    if not looks_like_hub_id(model_id) or ".." in model_id:
        return None
    path = bundled_dir("configs") / FOLDER / f"{model_id}.json"
    return path if path.is_file() else None


def model_config(recipe):
    """(transformers config, where it came from) for the recipe's model; no tokenizer unless the
    from_config loader needs one for its vocabulary size."""
    from transformers import AutoConfig

    from qlorafx.model.loaders import MODEL_LOADERS

    m = recipe.model
    loader = MODEL_LOADERS.get(m.loader)
    if m.loader != PRETRAINED:
        return loader.config(recipe, loader.tokenizer(recipe)), f"model.config ({m.loader})"
    if not Path(m.path).exists() and m.revision is None and (shipped := shipped_path(m.path)) is not None:
        fields = json.loads(shipped.read_text(encoding="utf-8"))
        return AutoConfig.for_model(fields.pop("model_type"), **fields), f"qlorafx's copy of {m.path}'s config.json"
    return loader.config(recipe, None), f"{m.path}'s config"
