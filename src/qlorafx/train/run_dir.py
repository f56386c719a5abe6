"""The run directory: what a finished run leaves behind, and the rule that protects it.

    recipe.yaml      the resolved recipe; `qlorafx train` on it reruns the run
    versions.json    package versions, device, the compute dtype 'auto' resolved to
    metrics.jsonl    one JSON object per log step and evaluation
    adapter/         the LoRA adapter in PEFT format
    tokenizer/       the tokenizer the run trained with
    base_model/      only for loader 'from_config': the random base the adapter belongs to
    run.json         written last: status 'finished' and the summary
"""

from __future__ import annotations

import json
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from qlorafx.errors import UserError

FINISHED_MARKER = "run.json"
PACKAGES = ("qlorafx", "torch", "transformers", "peft", "bitsandbytes", "accelerate", "pydantic")


class RunDirError(UserError):
    """The output directory cannot be used without losing something."""


def is_finished(run_dir: Path) -> bool:
    marker = run_dir / FINISHED_MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("status") == "finished"


def prepare(run_dir: Path, overwrite: bool, dry_run: bool = False) -> None:
    """Create an empty run directory; refuse one that holds anything unless asked to replace a run.

    With dry_run, only check: the pipeline checks first, and writes once the data has loaded."""
    blocker = next((p for p in (run_dir, *run_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise RunDirError(f"output_dir {run_dir} cannot be made: {blocker} is a file; choose another output_dir")
    if run_dir.exists() and any(run_dir.iterdir()):
        is_run = (run_dir / "recipe.yaml").is_file()
        if not is_run:
            raise RunDirError(
                f"output_dir {run_dir} is not empty and holds no qlorafx run; choose another output_dir"
            )
        if not overwrite:
            what = "a finished run" if is_finished(run_dir) else "an unfinished run"
            raise RunDirError(
                f"output_dir {run_dir} already holds {what}; pass --overwrite to replace it, "
                f"or set output_dir=<new folder>"
            )
        if not dry_run:
            shutil.rmtree(run_dir)
    if not dry_run:
        run_dir.mkdir(parents=True, exist_ok=True)


def versions(extra: dict[str, Any]) -> dict[str, Any]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {**found, **extra}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
