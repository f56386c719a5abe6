"""Reading a run directory back: a finished run, or one clear error."""

from __future__ import annotations

import json

import pytest

from qlorafx.errors import UserError
from qlorafx.report import RunError, read_run
from tests.report.finished_run import finished_run, metrics


def test_a_finished_run_reads_back(tmp_path):
    run = read_run(finished_run(tmp_path, ["lora.r=8"], metrics()))
    assert run.recipe.lora.r == 8
    assert run.status["steps"] == 40 and run.versions["compute_dtype"] == "float32"
    assert [r["step"] for r in run.evals] == [0, 40]
    assert [r["step"] for r in run.train_logs] == list(range(4, 41, 4))


def test_a_run_without_metrics_reads_back_without_them(tmp_path):
    assert read_run(finished_run(tmp_path)).metrics is None


def test_a_run_that_saved_a_config_beside_a_pretrained_base_still_reads_back(tmp_path):
    """Before such a config was refused it was saved (and ignored by training): the run stays usable."""
    run = finished_run(tmp_path, ["model.loader=pretrained", "model.path=org/some-model", "model.config=null"])
    saved = run / "recipe.yaml"
    saved.write_text(saved.read_text().replace("  config: {}\n", "  config: {model_type: llama, hidden_size: 64}\n"))
    assert "hidden_size: 64" in saved.read_text()
    recipe = read_run(run).recipe
    assert recipe.model.path == "org/some-model" and recipe.model.config == {}


def test_report_errors_are_user_errors():
    assert issubclass(RunError, UserError)  # the CLI prints them and exits 2


def test_no_such_directory(tmp_path):
    with pytest.raises(RunError, match=f"^{tmp_path / 'nope'}: no such directory; give the output_dir"):
        read_run(tmp_path / "nope")


def test_a_directory_without_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(RunError, match=r"holds no qlorafx run \(no recipe.yaml, no run.json\)"):
        read_run(tmp_path)


def test_an_unfinished_run(tmp_path):
    run = finished_run(tmp_path, records=metrics())
    (run / "run.json").unlink()  # training stopped before the end
    with pytest.raises(RunError, match=f"holds an unfinished run .*rerun it with qlorafx train {run / 'recipe.yaml'}"):
        read_run(run)


def test_malformed_metrics_name_the_line(tmp_path):
    run = finished_run(tmp_path, records=metrics())
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 44, "loss": oops}\n')
    with pytest.raises(RunError, match=rf"^{run / 'metrics.jsonl'}:13: malformed JSON"):
        read_run(run)


def test_a_damaged_run_json(tmp_path):
    run = finished_run(tmp_path)
    (run / "run.json").write_text("{")
    with pytest.raises(RunError, match="run.json: not valid JSON"):
        read_run(run)
    (run / "run.json").write_text(json.dumps(["finished"]))
    with pytest.raises(RunError, match="expected a JSON object, found list"):
        read_run(run)
