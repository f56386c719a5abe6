"""A finished run directory, read back: its recipe, run.json, versions.json and metrics.jsonl.

Only files are read (no torch), so ``qlorafx report`` works on any machine the run directory
is copied to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qlorafx.errors import UserError
from qlorafx.recipe.load import load_recipe
from qlorafx.recipe.schema import Recipe
from qlorafx.train.backends.jsonl import METRICS_FILE
from qlorafx.train.run_dir import FINISHED_MARKER


class ReportError(UserError):
    """The directory holds no finished run, or one of its files cannot be read."""


@dataclass
class FinishedRun:
    path: Path
    recipe: Recipe
    status: dict[str, Any]  # run.json
    versions: dict[str, Any] = field(default_factory=dict)  # versions.json
    metrics: list[dict[str, Any]] | None = None  # metrics.jsonl; None when the jsonl backend was off

    @property
    def train_logs(self) -> list[dict[str, Any]]:
        return [r for r in self.metrics or [] if "loss" in r]

    @property
    def evals(self) -> list[dict[str, Any]]:
        """The evaluations during training (qlorafx eval's later ones carry a 'source' and may use other data)."""
        return [r for r in self.metrics or [] if "eval_loss" in r and "source" not in r]


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); "
                          f"the run directory is damaged: rerun with qlorafx train {path.parent / 'recipe.yaml'}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_metrics(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ReportError(f"{path}:{number}: malformed JSON ({err.msg}); each line must be one JSON object") from None
        if not isinstance(record, dict) or "step" not in record:
            raise ReportError(f"{path}:{number}: expected a JSON object with a 'step', found {line[:80]!r}")
        records.append(record)
    return records


def read_run(path: str | Path) -> FinishedRun:
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such directory; give the output_dir of a finished qlorafx train run")
    marker = run_dir / FINISHED_MARKER
    status = _json(marker) if marker.is_file() else {}
    if status.get("status") != "finished":
        if not (run_dir / "recipe.yaml").is_file():
            raise ReportError(f"{run_dir} holds no qlorafx run (no recipe.yaml, no run.json); "
                              f"give the output_dir of a finished `qlorafx train`")
        raise ReportError(f"{run_dir} holds an unfinished run (no finished run.json: it stopped or is still training); "
                          f"a report needs a finished run: rerun it with qlorafx train {run_dir / 'recipe.yaml'} --overwrite")
    recipe = load_recipe(run_dir / "recipe.yaml").recipe
    versions = _json(run_dir / "versions.json") if (run_dir / "versions.json").is_file() else {}
    metrics_path = run_dir / METRICS_FILE
    metrics = read_metrics(metrics_path) if metrics_path.is_file() else None
    return FinishedRun(run_dir, recipe, status, versions, metrics)
