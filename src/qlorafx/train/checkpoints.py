"""Checkpoints that are complete or absent, and what resuming from one requires.

transformers' Trainer writes each checkpoint (adapter, optimizer, scheduler, RNG states, the
trainer state with its step and data position) into a staging folder; once it is whole, qlorafx
adds the resolved recipe and renames it into ``checkpoints/checkpoint-N`` in one step. A crash
mid-write leaves only staging, which is cleared at the next start. Only the newest
``training.keep_checkpoints`` stay.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from qlorafx.errors import UserError, shown
from qlorafx.run_files import (ADAPTER_DIR, CHECKPOINTS_DIR, FINISHED_MARKER, METRICS_FILE, RECIPE_FILE, TENSORBOARD_DIR,
                               WANDB_DIR)
from qlorafx.train import run_dir as run_dir_mod

MARKER = "qlorafx_checkpoint.json"
# Settings that may change between an interrupted run and its resume without changing the run.
RESUME_SAFE = ("description", "logging", "output_dir", "training.save_every", "training.keep_checkpoints",
               "data.cache_dir")


class ResumeError(UserError):
    """Nothing to resume from, or a recipe that no longer matches the checkpoint."""


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / CHECKPOINTS_DIR


def staging_dir(run_dir: Path) -> Path:
    return checkpoints_dir(run_dir) / ".staging"


def step_of(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def complete(run_dir: Path) -> list[Path]:
    """The published checkpoints, oldest first."""
    folder = checkpoints_dir(run_dir)
    found = [p for p in folder.glob("checkpoint-*") if (p / MARKER).is_file()] if folder.is_dir() else []
    return sorted(found, key=step_of)


def publish(run_dir: Path, step: int, recipe_yaml: str, keep: int, wall_seconds: float | None = None,
            processes: int = 1) -> Path:
    """Move a whole checkpoint from staging into place, then drop the oldest beyond ``keep``.
    ``wall_seconds``: the run's training time so far, every session's, which a resumed run adds to.
    ``processes``: how many trained it (the global batch and each one's share of the data depend on it)."""
    staged = staging_dir(run_dir) / f"checkpoint-{step}"
    marker = {"step": step, "recipe": recipe_yaml, "processes": processes,
              **({"wall_seconds": wall_seconds} if wall_seconds is not None else {})}
    (staged / MARKER).write_text(json.dumps(marker), encoding="utf-8")
    final = checkpoints_dir(run_dir) / staged.name
    if final.exists():  # a resumed run reaching a step it had saved before: the new one replaces it
        shutil.rmtree(final)
    os.replace(staged, final)
    if not any(staging_dir(run_dir).iterdir()):
        staging_dir(run_dir).rmdir()
    for old in complete(run_dir)[:-keep]:
        shutil.rmtree(old)
    # the checkpoint, and what the metrics backends have written so far: a run killed later can still be replaced
    run_dir_mod.record_written(run_dir, f"{CHECKPOINTS_DIR}/{final.name}", TENSORBOARD_DIR, WANDB_DIR)
    return final


def wall_seconds(checkpoint: Path) -> float:
    """The training time the run had spent when ``checkpoint`` was saved (0 for one saved before it was recorded)."""
    return float(json.loads((checkpoint / MARKER).read_text(encoding="utf-8")).get("wall_seconds", 0.0))


def clear_staging(run_dir: Path) -> None:
    shutil.rmtree(staging_dir(run_dir), ignore_errors=True)


def find(run_dir: Path, given: str | None) -> Path:
    """The checkpoint to resume from: the one given, or the newest complete one in the run."""
    if given:
        path = Path(given).expanduser().resolve()
        if not (path / MARKER).is_file():
            raise ResumeError(f"{path} is not a complete qlorafx checkpoint (no {MARKER}); "
                              f"checkpoints are in {checkpoints_dir(run_dir)}")
        return path
    found = complete(run_dir)
    if not found:
        raise ResumeError(f"{run_dir} holds no complete checkpoint to resume from (the run stopped before its first); "
                          f"start it over: the same command with --overwrite in place of --resume")
    return found[-1]


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def differences(checkpoint: Path, recipe_yaml: str) -> list[str]:
    """Training-relevant settings that differ between the checkpoint's recipe and this one."""
    saved = _flat(yaml.safe_load(json.loads((checkpoint / MARKER).read_text())["recipe"]))
    now = _flat(yaml.safe_load(recipe_yaml))
    keys = sorted(set(saved) | set(now))
    relevant = [k for k in keys if not any(k == s or k.startswith(s + ".") for s in RESUME_SAFE)]
    return [f"{k}: {shown(saved.get(k))} in the checkpoint, {shown(now.get(k))} now" for k in relevant
            if saved.get(k) != now.get(k)]


class AlreadyFinished(Exception):
    """--resume on a finished run: nothing to do (not an error)."""


def layout_change(checkpoint: Path, processes: int) -> str | None:
    """What changes when a checkpoint written by one number of processes resumes with another (how they
    are spread over machines does not matter); None when nothing does. Checkpoints from before qlorafx
    recorded it say nothing."""
    saved = json.loads((checkpoint / MARKER).read_text()).get("processes")
    if saved is None or saved == processes:
        return None
    return (f"the checkpoint was trained by {saved} processes and this run has {processes}: the global batch "
            f"(micro_batch_size x processes x grad_accum) and the examples each process reads would change. "
            f"Resume with {saved} processes in all, on any number of machines")


def resume_point(run_dir: Path, given: str | None, force: bool, recipe_yaml: str, processes: int = 1) -> Path:
    """The checkpoint to continue from, after checking the run is unfinished and still the same run,
    trained by as many processes."""
    from qlorafx.train.run_dir import is_finished

    if is_finished(run_dir):
        raise AlreadyFinished(
            f"{run_dir} holds a finished run ({FINISHED_MARKER}); nothing to resume. To train it further, start a new "
            f"run from its adapter: qlorafx train {run_dir / RECIPE_FILE} lora.init_from={run_dir / ADAPTER_DIR} "
            f"output_dir={run_dir}-more (and training.max_steps or epochs for the further training)")
    if not (run_dir / RECIPE_FILE).is_file():
        raise ResumeError(f"{run_dir} holds no qlorafx run to resume; run without --resume to start one")
    checkpoint = find(run_dir, given)
    changed = differences(checkpoint, recipe_yaml)
    if changed and not force:
        listing = "".join(f"\n  - {line}" for line in changed)
        raise ResumeError(f"the recipe differs from the checkpoint's in settings that change training:{listing}\n"
                          "resume with the recipe the run started with, or pass --force to accept the differences")
    if (change := layout_change(checkpoint, processes)) is not None and not force:
        raise ResumeError(f"{change}, or pass --force to continue with {processes} (a different run from here on)")
    return checkpoint


def drop_metrics_after(run_dir: Path, step: int) -> None:
    """Metrics logged after the checkpoint will be logged again by the resumed run: drop them."""
    path = run_dir / METRICS_FILE
    if path.is_file():
        # and the interrupted session's closing train_loss: the resumed run's, over every step, replaces it
        kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                if line.strip() and json.loads(line).get("step", 0) <= step and "train_loss" not in json.loads(line)]
        path.write_text("".join(kept), encoding="utf-8")
