"""The run directory's protection: only a folder qlorafx marked as its run is ever replaced, and
replacing it never takes a file qlorafx did not write."""

from __future__ import annotations

import os
import shutil

import pytest

from qlorafx.train import run_dir as rundir
from qlorafx.run_files import RUN_ENTRIES, RUN_MARKER
from qlorafx.train.run_dir import RunDirError
from tests.cli.test_cli import qlorafx
from tests.train.tiny import QUICKSTART_DATA, tiny_recipe


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_with_output_dir_dot_beside_the_users_own_recipe_and_data(tmp_path):
    """A user's project: their recipe.yaml, data and notes, and output_dir '.'. --overwrite must not
    take the project for a run (before issue 9 a recipe.yaml made it one, and it was emptied)."""
    project = tmp_path / "project"
    project.mkdir()
    tiny_recipe(project).rename(project / "recipe.yaml")
    shutil.copy(QUICKSTART_DATA, project / "data.jsonl")
    (project / "notes.md").write_text("what I tried\n")
    before = _tree(project)
    done = qlorafx("train", "recipe.yaml", "output_dir=.", "data.datasets=[{path: data.jsonl, format: alpaca}]",
                   "--overwrite", cwd=project)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: output_dir {project} is not empty and holds no qlorafx run (no {RUN_MARKER} mark" in done.stderr
    assert "Traceback" not in done.stderr
    assert _tree(project) == before


def _fake_run(folder):
    """A run directory as qlorafx makes one (marked), with a few of a run's files."""
    rundir.prepare(folder, overwrite=False)
    (folder / "recipe.yaml").write_text("output_dir: run\n")
    (folder / "run.json").write_text('{"status": "finished"}\n')
    (folder / "adapter").mkdir()
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    rundir.record_written(folder, "adapter")  # as the pipeline records what it wrote


def test_overwrite_refuses_a_run_that_also_holds_the_users_files(tmp_path):
    run = tmp_path / "run"
    _fake_run(run)
    (run / "notes.md").write_text("mine\n")
    (run / "eval-by-hand").mkdir()
    before = _tree(run)
    with pytest.raises(RunDirError, match=r"holds a qlorafx run and also files qlorafx did not write "
                                          r"\(eval-by-hand, notes.md\); --overwrite removes only a run's own files, "
                                          r"so nothing was removed"):
        rundir.prepare(run, overwrite=True)
    assert _tree(run) == before and (run / "eval-by-hand").is_dir()


def test_overwrite_replaces_a_run_that_holds_only_its_own_files(tmp_path):
    run = tmp_path / "run"
    _fake_run(run)
    elsewhere = tmp_path / "my-adapters"
    elsewhere.mkdir()
    (elsewhere / "keep.safetensors").write_bytes(b"mine")
    shutil.rmtree(run / "adapter")
    (run / "adapter").symlink_to(elsewhere, target_is_directory=True)  # a link is removed, not what it points to
    rundir.prepare(run, overwrite=True)
    assert sorted(os.listdir(run)) == [RUN_MARKER]
    assert (elsewhere / "keep.safetensors").read_bytes() == b"mine"


def test_every_file_a_real_run_writes_is_a_run_entry(tracked):
    """RUN_ENTRIES, what --overwrite may remove, holds every name a run with all backends wrote."""
    _, run, _, _ = tracked
    names = set(os.listdir(run))
    assert RUN_MARKER in names and names <= RUN_ENTRIES, names - RUN_ENTRIES
    # and every file inside the run's own folders is recorded as written by it: --overwrite may replace it whole
    assert rundir._foreign(run) == []
    assert {p.split("/")[0] for p in rundir._recorded(run)} >= {"adapter", "tokenizer", "base_model", "tensorboard"}


def test_overwrite_refuses_a_run_whose_own_folders_hold_the_users_files_through_the_cli(tmp_path):
    """A real run, then the user's files inside the run's own folders (beside the adapter, in a checkpoint, a
    folder of theirs in checkpoints/). Before, --overwrite removed adapter/ and checkpoints/ with them; now it
    refuses, names them, and removes nothing; without them it replaces the run."""
    recipe = tiny_recipe(tmp_path)
    common = ["training.max_steps=4", "training.save_every=2", "data.val_size=0", "logging.every=2",
              "logging.sample_max_new_tokens=0", "logging.backends=[jsonl, tensorboard]"]
    first = qlorafx("train", recipe, *common, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    run = tmp_path / "run"
    checkpoint = sorted((run / "checkpoints").glob("checkpoint-*"))[-1]
    mine = [run / "adapter" / "my-notes.md", checkpoint / "eval-by-hand.json", run / "checkpoints" / "best" / "keep.bin"]
    for path in mine:
        path.parent.mkdir(exist_ok=True)
        path.write_text("mine\n")
    before = _tree(run)

    again = qlorafx("train", recipe, *common, "--overwrite", timeout=600)
    assert again.returncode == 2, again.stderr[-2000:]
    assert (f"error: output_dir {run} holds a qlorafx run and also files qlorafx did not write (adapter/my-notes.md, "
            f"checkpoints/best/keep.bin, checkpoints/{checkpoint.name}/eval-by-hand.json); --overwrite removes only a "
            "run's own files, so nothing was removed") in again.stderr
    assert "Traceback" not in again.stderr
    assert _tree(run) == before

    for path in mine:
        path.unlink()
    replaced = qlorafx("train", recipe, *common, "--overwrite", timeout=600)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert (run / "run.json").is_file() and not (run / "checkpoints" / "best").exists()


def test_a_run_directory_that_cannot_be_made_is_refused_before_and_when_it_is_made(tmp_path):
    # /proc takes no new folder, even for root: mkdir there raised FileNotFoundError, a traceback from train
    with pytest.raises(RunDirError, match=r"^output_dir /proc/qlorafx-run cannot be made: /proc cannot be written to"):
        rundir.prepare(rundir.Path("/proc/qlorafx-run"), overwrite=False, dry_run=True)
    with pytest.raises(RunDirError, match=r"^output_dir /proc/qlorafx-run cannot be made: "):
        rundir.prepare(rundir.Path("/proc/qlorafx-run"), overwrite=False)
    rundir.prepare(tmp_path / "new" / "run", overwrite=False, dry_run=True)  # a place that can be written: no trace left
    assert list(tmp_path.iterdir()) == []


def test_a_run_stopped_while_its_report_is_made_is_still_replaced_by_overwrite(tmp_path, monkeypatch):
    """The adapter and the tokenizer are recorded as the run's own once written, before the report: a run
    stopped while its card and plot are made (Ctrl-C then) was refused by --overwrite for the adapter and
    tokenizer files it wrote itself, the mark recording them only after the report."""
    from qlorafx import finetune
    from qlorafx.recipe.load import load_recipe

    loaded = load_recipe(tiny_recipe(tmp_path), ["training.max_steps=1", "data.val_size=0", "logging.backends=[jsonl]",
                                                 "logging.sample_max_new_tokens=0"])

    def interrupted(_run_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune, "write_report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        finetune.train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    run = tmp_path / "run"
    assert (run / "adapter").is_dir() and (run / "tokenizer").is_dir()
    rundir.prepare(run, overwrite=True)  # what `train --overwrite` runs first: refused before, with the run's files
    assert [p.name for p in run.iterdir()] == [RUN_MARKER]
