"""The wandb backend, offline: what it logged is read back from the run's .wandb file."""

from __future__ import annotations

from pathlib import Path

import pytest

from qlorafx.recipe.load import load_recipe
from qlorafx.train.backends import RunInfo, tracking
from tests.train.backends.wandb_file import read_offline_run
from tests.train.tiny import tiny_recipe


def offline_run_dir(wandb_dir):
    [run_dir] = (wandb_dir / "wandb").glob("offline-run-*")
    return run_dir


def test_wandb_logged_every_metrics_record(tracked):
    _, _, wandb_dir, records = tracked
    logged = read_offline_run(offline_run_dir(wandb_dir))
    by_step = {row["_step"]: row for row in logged.history}
    train_logs = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_logs] == [4, 8, 12, 16, 20, 24]
    for record in train_logs:
        row = by_step[record["step"]]
        assert row["train/loss"] == pytest.approx(record["loss"])
        assert row["train/lr"] == pytest.approx(2e-2)
        assert row["train/grad_norm"] == pytest.approx(record["grad_norm"])
        assert row["train/tokens_per_s"] == pytest.approx(record["tokens_per_s"])
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 24]  # before training, and after it: the backend outlives train()
    for record in evals:
        assert by_step[record["step"]]["eval/loss"] == pytest.approx(record["eval_loss"])
    assert by_step[24]["eval/loss"] < by_step[0]["eval/loss"]


def test_wandb_run_carries_the_recipe_and_the_settings(tracked):
    loaded, _, wandb_dir, _ = tracked
    logged = read_offline_run(offline_run_dir(wandb_dir))
    assert logged.run.project == "qlorafx-tests"
    assert logged.run.display_name == "tiny-tracked"
    assert list(logged.run.tags) == ["test", "tiny"]
    config = {k: v for k, v in logged.config.items() if not k.startswith("_")}
    assert config == loaded.recipe.model_dump(mode="json")  # the resolved recipe, every key
    assert logged.exit_code == 0


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """(the tiny recipe with the wandb backend, an empty run directory); wandb offline, its files under tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return load_recipe(tiny_recipe(tmp_path), ["logging.backends=[wandb]", "logging.wandb.mode=offline"]), run_dir


def test_wandb_files_go_to_the_run_directory_without_wandb_dir(offline_wandb):
    loaded, run_dir = offline_wandb
    with pytest.raises(RuntimeError, match="boom"):
        with tracking(["wandb"], RunInfo(loaded.recipe, loaded.to_yaml(), run_dir)) as backends:
            files = Path(backends[0].wandb_run.dir)  # <offline run>/files
            backends[0].write({"step": 3, "loss": 1.5})
            raise RuntimeError("boom")
    assert files.parent == offline_run_dir(run_dir)  # inside the run directory
    logged = read_offline_run(files.parent)
    assert logged.run.display_name == "run"  # default: the run directory's name
    assert [row["train/loss"] for row in logged.history] == [1.5]
    assert logged.exit_code == 1  # a run that raised is marked failed


def test_a_resumed_run_continues_the_same_wandb_run(offline_wandb):
    loaded, run_dir = offline_wandb

    def part(resumed: bool, step: int) -> str:
        with tracking(["wandb"], RunInfo(loaded.recipe, loaded.to_yaml(), run_dir, resumed=resumed)) as backends:
            backends[0].write({"step": step, "loss": 2.0 / step})
            return backends[0].wandb_run.id

    first = part(False, 1)
    assert part(True, 2) == first  # --resume: the same wandb run goes on
    parts = sorted(run_dir.glob("wandb/offline-run-*"))
    assert len(parts) == 2 and all(f"-{first}" in p.name for p in parts)  # `wandb sync` joins them
    assert [row["_step"] for p in parts for row in read_offline_run(p).history] == [1, 2]
    assert part(False, 1) != first  # a run started afresh is a new wandb run


def test_a_damaged_wandb_record_stops_the_resume_with_the_fix(offline_wandb):
    from qlorafx.errors import UserError

    loaded, run_dir = offline_wandb
    (run_dir / "wandb-run.json").write_text("{not json")
    with pytest.raises(UserError, match=r"wandb-run.json does not hold a wandb run id .*delete it to log the resumed "
                                        r"part to a new wandb run"):
        with tracking(["wandb"], RunInfo(loaded.recipe, loaded.to_yaml(), run_dir, resumed=True)):
            pass
    assert not list(run_dir.glob("wandb/offline-run-*"))  # no wandb run was started
