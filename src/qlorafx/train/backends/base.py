"""What every metrics backend is: opened once per run, handed each metrics record, closed at the end.

A record is a dict with ``step`` and the metrics of one log or evaluation (see callbacks.py).
Backends are opened after the run directory exists and closed after the final evaluation, so
they see the evaluation before training, every log, and the evaluation after.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunInfo:
    """What a backend may record about the run it tracks."""

    recipe: Any  # the typed Recipe
    recipe_yaml: str  # the resolved recipe, exactly as saved to recipe.yaml
    run_dir: Path
    resumed: bool = False  # continues from a checkpoint: a backend with runs of its own continues the same one


class Backend:
    """No-op defaults; a backend overrides what it needs."""

    requires: str | None = None  # the optional package it imports, checked before any weight loads
    extra: str | None = None  # the pip extra that installs it: qlorafx[<extra>]

    def __init__(self, run: RunInfo):
        self.run = run

    def start(self, total_steps: int) -> None:
        """Training begins and will take ``total_steps`` optimizer steps."""

    def step(self, step: int) -> None:
        """An optimizer step ended."""

    def write(self, record: dict[str, Any]) -> None:
        """One log or evaluation."""

    def train_end(self) -> None:
        """The training loop ended (the final evaluation may still log)."""

    def close(self, failed: bool = False) -> None:
        """The run is over; ``failed`` when it ended with an error."""


def metric_name(key: str) -> str:
    """Dashboard names that group by split: loss -> train/loss, eval_loss -> eval/loss."""
    return f"eval/{key.removeprefix('eval_')}" if key.startswith("eval_") else f"train/{key}"


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers under dashboard names (bool is an int in Python, but not a metric)."""
    return {metric_name(k): v for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
