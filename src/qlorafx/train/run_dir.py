"""The run directory as it is made and written: the rule that protects it (its names: run_files.py).

Only a folder that holds the mark counts as a run (a folder merely holding a recipe.yaml may be
the user's project), and --overwrite removes only what a run writes (RUN_ENTRIES): a folder that
also holds anything else is refused, with the names, and nothing is removed.
"""

from __future__ import annotations

import json
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from qlorafx.errors import UserError
from qlorafx.run_files import FINISHED_MARKER, RUN_ENTRIES, RUN_MARKER

PACKAGES = ("qlorafx", "torch", "transformers", "peft", "bitsandbytes", "accelerate", "pydantic")


class RunDirError(UserError):
    """The output directory cannot be used without losing something."""


def is_finished(run_dir: Path) -> bool:
    marker = run_dir / FINISHED_MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("status") == "finished"


def is_run(run_dir: Path) -> bool:
    """A folder qlorafx created as a run directory (it holds the mark)."""
    return (run_dir / RUN_MARKER).is_file()


def _names(paths: list[Path], limit: int = 5) -> str:
    names = sorted(p.name for p in paths)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _remove_run(run_dir: Path) -> None:
    """The run's own entries, the mark last (a removal cut short leaves a folder still marked)."""
    for entry in sorted(run_dir.iterdir(), key=lambda p: p.name == RUN_MARKER):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:  # a file, or a link (removed itself, never what it points to)
            entry.unlink()


def prepare(run_dir: Path, overwrite: bool, dry_run: bool = False) -> None:
    """Create an empty run directory, marked as one; refuse one that holds anything unless asked to
    replace a run qlorafx made, and then only when it holds nothing but that run.

    With dry_run, only check: the pipeline checks first, and writes once the data has loaded."""
    blocker = next((p for p in (run_dir, *run_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise RunDirError(f"output_dir {run_dir} cannot be made: {blocker} is a file; choose another output_dir")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not is_run(run_dir):
            raise RunDirError(
                f"output_dir {run_dir} is not empty and holds no qlorafx run (no {RUN_MARKER} mark: qlorafx writes "
                "only into an empty or new folder, and --overwrite replaces only a folder qlorafx made); "
                "choose another output_dir"
            )
        if not overwrite:
            what = "a finished run" if is_finished(run_dir) else "an unfinished run"
            raise RunDirError(
                f"output_dir {run_dir} already holds {what}; pass --overwrite to replace it, "
                f"or set output_dir=<new folder>"
            )
        foreign = [p for p in run_dir.iterdir() if p.name not in RUN_ENTRIES]
        if foreign:
            raise RunDirError(
                f"output_dir {run_dir} holds a qlorafx run and also files qlorafx did not write ({_names(foreign)}); "
                "--overwrite removes only a run's own files, so nothing was removed: move those files "
                "elsewhere, or set output_dir=<new folder>"
            )
        if not dry_run:
            _remove_run(run_dir)
    if not dry_run:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_MARKER).write_text(json.dumps({"created_by": "qlorafx"}) + "\n", encoding="utf-8")


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
