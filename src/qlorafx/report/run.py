"""A finished run directory, read back: the one reader, for every command that uses a run.

    read_run(path)      a finished run (run.json says so), its recipe, versions.json and
                        metrics.jsonl: what the report and judge need
    trained_run(path)   a finished run, its recipe, adapter, tokenizer and base, checked against each
                        other: what generate, chat, eval, merge and serve need before they load a weight

Both read run.json and the recipe the same way (finished_run); versions and metrics are read when
first used, so a damaged metrics.jsonl stops a report but not a generate.

Only files are read (no torch), so both work on any machine the run directory is copied to. The
names of the files are in qlorafx/run_files.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from qlorafx.errors import UserError
from qlorafx.model import adapter_files, base_identity
from qlorafx.model.loaders import FROM_CONFIG, PRETRAINED
from qlorafx.recipe.load import load_recipe, merged_yaml
from qlorafx.run_files import (ADAPTER_DIR, BASE_MODEL_DIR, FINISHED_MARKER, METRICS_FILE, RECIPE_FILE, TOKENIZER_DIR,
                               VERSIONS_FILE)


class RunError(UserError):
    """The directory holds no finished run that can be read as asked; the message says what to do."""


@dataclass(frozen=True)
class FinishedRun:
    path: Path
    recipe: Any  # qlorafx.recipe.schema.Recipe
    base: str  # local folder or hub id the adapter applies to
    status: dict[str, Any]  # run.json
    encoder_decoder: bool = False  # a T5-style base: the prompt goes to the encoder

    @property
    def revision(self) -> str | None:
        """The hub commit the run trained on (recorded in run.json), else the recipe's model.revision."""
        return (self.status.get("base") or {}).get("revision") or self.recipe.model.revision

    @property
    def dataset(self):
        """The dataset whose format prompts are rendered in: the run's first."""
        return self.recipe.data.datasets[0]

    @cached_property
    def versions(self) -> dict[str, Any]:
        path = self.path / VERSIONS_FILE
        return _json(path) if path.is_file() else {}

    @cached_property
    def metrics(self) -> list[dict[str, Any]] | None:
        """metrics.jsonl's records; None when the jsonl backend was off."""
        path = self.path / METRICS_FILE
        return read_metrics(path) if path.is_file() else None

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
        raise RunError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); the run directory is damaged: "
                       f"rerun with qlorafx train {path.parent / RECIPE_FILE}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_metrics(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise RunError(f"{path}:{number}: malformed JSON ({err.msg}); each line must be one JSON object") from None
        if not isinstance(record, dict) or "step" not in record:
            raise RunError(f"{path}:{number}: expected a JSON object with a 'step', found {line[:80]!r}")
        records.append(record)
    return records


def base_of(run_dir: Path, recipe) -> str:
    """The base the run's adapter applies to: its own base_model/ (loader from_config), else model.path."""
    return str(run_dir / BASE_MODEL_DIR) if recipe.model.loader == FROM_CONFIG else recipe.model.path


def _task_type(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / ADAPTER_DIR / adapter_files.CONFIG).read_text(encoding="utf-8")).get("task_type")
    except (OSError, ValueError, AttributeError):  # no readable adapter config: trained_run says why, if it matters
        return None


def _saved_recipe(recipe_file: Path):
    """The run's recipe. A run trained before a model.config beside a pretrained base was refused saved that
    config, which training ignored: it is read without it, so the run stays usable."""
    model = merged_yaml(recipe_file)[0].get("model")
    stale = isinstance(model, dict) and model.get("loader", PRETRAINED) != FROM_CONFIG and model.get("config")
    return load_recipe(recipe_file, ["model.config=null"] if stale else []).recipe


def finished_run(path: str | Path) -> FinishedRun:
    """The finished run in ``path`` and its recipe, or a RunError saying what is there instead and what to do."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        what = f"{run_dir} is not a folder" if run_dir.exists() else f"{run_dir}: no such directory"
        raise RunError(f"{what}; give the output_dir of a finished `qlorafx train`")
    marker, recipe_file = run_dir / FINISHED_MARKER, run_dir / RECIPE_FILE
    status = _json(marker) if marker.is_file() else None
    if status is None or status.get("status") != "finished":
        if status is None and not recipe_file.is_file():
            raise RunError(f"{run_dir} holds no qlorafx run (no {RECIPE_FILE}, no {FINISHED_MARKER}); "
                           f"give the output_dir of a finished `qlorafx train`")
        said = f"no {FINISHED_MARKER}" if status is None else f"{FINISHED_MARKER} says {status.get('status')!r}"
        raise RunError(f"{run_dir} holds an unfinished run ({said}); resume or rerun it first: resume it with "
                       f"qlorafx train {recipe_file} --resume, or rerun it with qlorafx train {recipe_file} --overwrite")
    if not recipe_file.is_file():
        raise RunError(f"{recipe_file} is missing: it says how the run was trained, quantized and rendered its prompts")
    recipe = _saved_recipe(recipe_file)
    return FinishedRun(run_dir, recipe, base_of(run_dir, recipe), status,
                       encoder_decoder=_task_type(run_dir) == "SEQ_2_SEQ_LM")


def read_run(path: str | Path) -> FinishedRun:
    """The finished run with its versions and metrics read (a damaged file is reported here)."""
    run = finished_run(path)
    run.versions, run.metrics  # noqa: B018  (read now: their errors name the file)
    return run


def trained_run(path: str | Path) -> FinishedRun:
    """The finished run, its adapter, tokenizer and base present and the adapter recorded on that
    base: everything a command that loads the model needs, checked before it loads a weight."""
    run = finished_run(path)
    adapter = run.path / ADAPTER_DIR
    config = adapter_files.read_config(adapter, f"{run.path}/{ADAPTER_DIR}")
    if not (run.path / TOKENIZER_DIR).is_dir():
        raise RunError(f"{run.path / TOKENIZER_DIR} is missing: prompts must be tokenized as the run trained")
    from_config = run.recipe.model.loader == FROM_CONFIG
    if from_config and not (Path(run.base) / "config.json").is_file():
        raise RunError(f"{run.base} is missing: a from_config run keeps its random base there")
    _check_base(run, adapter, config.get("base_model_name_or_path"))
    return run


def _check_base(run: FinishedRun, adapter: Path, recorded_path: str | None) -> None:
    """The base found now is the one the adapter trained on, by content (run.json's "base", written since
    qlorafx records it); a run from before then, by where its base was, or by content when it was a copy."""
    recorded = run.status.get("base")
    if recorded:
        if "hub" not in recorded and not Path(run.base).is_dir():
            raise RunError(f"the run's base {run.base} is not there; it trained on a local folder: put that folder "
                           f"there, or set model.path in {run.path / RECIPE_FILE} to where it is now")
        changed = base_identity.differences(recorded, base_identity.identity(run.base, run.revision))
        if changed:
            fix = ("the run's own base_model/ was changed after training: restore it from the run it was copied from"
                   if run.recipe.model.loader == FROM_CONFIG else
                   f"point model.path in {run.path / RECIPE_FILE} at the base it trained on")
            raise RunError(f"the base at {run.base} is not the one the adapter in {adapter} trained on: "
                           f"{'; '.join(changed[:3])}; {fix}")
        return
    from_config = run.recipe.model.loader == FROM_CONFIG
    if adapter_files.same_base(recorded_path, run.base):
        return
    if from_config and recorded_path and Path(recorded_path).name == BASE_MODEL_DIR:
        if not Path(recorded_path).exists():
            return  # the run directory was moved, its base_model/ with it
        if base_identity.folder_identity(recorded_path) == base_identity.folder_identity(run.base):
            return  # a copy: its base_model/ holds the same files
    raise RunError(f"the adapter in {adapter} was trained on {recorded_path}, but this run's base is {run.base}; "
                   f"it needs {recorded_path}")
