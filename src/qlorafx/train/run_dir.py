"""The run directory as it is made and written: the rule that protects it (its names: run_files.py).

Only a folder that holds the mark counts as a run (a folder merely holding a recipe.yaml may be
the user's project), and --overwrite removes only what a run writes: at the top, the names in
RUN_ENTRIES; inside the run's own folders (adapter/, checkpoints/, ...), only the files the mark
records as written by the run (``record_written``, called just after each writer: the published
checkpoint, the adapter, the tokenizer, the base, the metrics backends' folders). A folder that
also holds anything else is refused, with the names, and nothing is removed. A run cut short
(SIGKILL) between a write and its record leaves files unrecorded: those are refused too, named,
for the user to remove; ``checkpoints/.staging`` (where the Trainer writes a checkpoint before it
is published, cleared at every start) is the run's own scratch.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from qlorafx.errors import UserError
from qlorafx.run_files import CHECKPOINTS_DIR, FINISHED_MARKER, RUN_ENTRIES, RUN_MARKER

STAGING = f"{CHECKPOINTS_DIR}/.staging"  # checkpoints.staging_dir, the Trainer's scratch (train/checkpoints.py)

PACKAGES = ("qlorafx", "torch", "transformers", "peft", "bitsandbytes", "accelerate", "pydantic")


class RunDirError(UserError):
    """The output directory cannot be used without losing something."""


def is_finished(run_dir: Path) -> bool:
    marker = run_dir / FINISHED_MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("status") == "finished"


def is_run(run_dir: Path) -> bool:
    """A folder qlorafx created as a run directory (it holds the mark, a file, not a link to one)."""
    mark = run_dir / RUN_MARKER
    return mark.is_file() and not mark.is_symlink()


def _recorded(run_dir: Path) -> set[str]:
    try:
        return set(json.loads((run_dir / RUN_MARKER).read_text(encoding="utf-8")).get("written", []))
    except (OSError, ValueError, AttributeError):
        return set()


def _files_under(run_dir: Path, folder: str) -> list[str]:
    """Every non-folder entry under ``folder`` (links included, never followed), relative, '/'-separated."""
    found = []
    for root, dirs, files in os.walk(run_dir / folder):  # os.walk does not descend into linked folders
        base = Path(root).relative_to(run_dir).as_posix()
        found += [f"{base}/{name}" for name in files]
        found += [f"{base}/{name}" for name in dirs if (Path(root) / name).is_symlink()]
    return found


def record_written(run_dir: Path, *folders: str) -> None:
    """Record in the mark the files now under ``folders`` (paths relative to the run) as the run's own: call it
    right after the run wrote them. Records of files gone since (pruned checkpoints) are dropped."""
    if not is_run(run_dir):
        return
    kept = {name for name in _recorded(run_dir) if (run_dir / name).exists() or (run_dir / name).is_symlink()}
    written = kept.union(*(_files_under(run_dir, f) for f in folders if (run_dir / f).is_dir()))
    mark = {"created_by": "qlorafx", "written": sorted(written)}
    tmp = run_dir / f"{RUN_MARKER}.tmp"
    tmp.write_text(json.dumps(mark) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / RUN_MARKER)  # a mark is whole or the old one: never a half-written record


@contextmanager
def recording(run_dir: Path | None, *folders: str) -> Iterator[None]:
    """Record ``folders`` once the block ends, however it ends (its writers, e.g. the metrics backends, are done
    by then when opened inside it). None: nothing to record (a process other than the first)."""
    try:
        yield
    finally:
        if run_dir is not None:
            record_written(run_dir, *folders)


def _foreign(run_dir: Path) -> list[str]:
    """What --overwrite would remove that the run did not write: top-level names outside RUN_ENTRIES, and
    files inside the run's own folders that the mark does not record."""
    foreign = [p.name for p in run_dir.iterdir() if p.name not in RUN_ENTRIES and p.name != f"{RUN_MARKER}.tmp"]
    recorded = _recorded(run_dir)
    for entry in run_dir.iterdir():
        if entry.name in RUN_ENTRIES and entry.is_dir() and not entry.is_symlink():
            foreign += [name for name in _files_under(run_dir, entry.name)
                        if name not in recorded and not name.startswith(STAGING + "/")]
    return foreign


def _names(names: list[str], limit: int = 5) -> str:
    names = sorted(names)
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
        foreign = _foreign(run_dir)
        if foreign:
            raise RunDirError(
                f"output_dir {run_dir} holds a qlorafx run and also files qlorafx did not write ({_names(foreign)}); "
                "--overwrite removes only a run's own files, so nothing was removed: move those files "
                "elsewhere (or, if a run cut short left them before recording them, delete them), "
                "or set output_dir=<new folder>"
            )
        if not dry_run:
            _remove_run(run_dir)
    if dry_run:
        unwritable = cannot_be_made(run_dir)
        if unwritable:
            raise RunDirError(f"output_dir {run_dir} cannot be made: {unwritable}; choose another output_dir")
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_MARKER).write_text(json.dumps({"created_by": "qlorafx"}) + "\n", encoding="utf-8")
    except OSError as err:
        raise RunDirError(f"output_dir {run_dir} cannot be made: {err.strerror or err}; choose another output_dir") from None


def cannot_be_made(folder: Path) -> str | None:
    """Why a folder (a run directory, merge's --out) cannot be made or written where it is asked for (a
    read-only mount, a folder of someone else's, /proc), found by making and removing a folder there now
    rather than after the weights have loaded (a traceback then); None when it can."""
    place = next(p for p in (folder, *folder.parents) if p.exists())
    times = place.stat()
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".qlorafx-probe-", dir=place))
    except OSError as err:
        return f"{place} cannot be written to ({err.strerror or err})"
    try:  # the probe leaves the folder as it was, its times included: a check touches no run (tests/hostile)
        os.utime(place, ns=(times.st_atime_ns, times.st_mtime_ns))
    except OSError:  # a folder writable but not the user's own: its times cannot be set back, and need not be
        pass
    return None


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
