"""qlorafx report RUN_DIR: writes the card and the plot of a finished run; anything else exits 2."""

from __future__ import annotations

from tests.cli.test_cli import heavy_modules_after, qlorafx
from tests.report.finished_run import finished_run, metrics


def test_report_writes_card_and_plot(tmp_path):
    run = finished_run(tmp_path, records=metrics())
    done = qlorafx("report", run)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"wrote {run / 'README.md'}", f"wrote {run / 'curves.png'}"]
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_report_on_a_folder_without_a_run_exits_2(tmp_path):
    done = qlorafx("report", tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"error: {tmp_path} holds no qlorafx run (no recipe.yaml, no run.json); " \
                          f"give the output_dir of a finished `qlorafx train`\n"
    assert done.stdout == ""


def test_report_on_an_unfinished_run_exits_2(tmp_path):
    run = finished_run(tmp_path, records=metrics())
    (run / "run.json").unlink()
    done = qlorafx("report", run)
    assert done.returncode == 2
    assert "holds an unfinished run" in done.stderr and "Traceback" not in done.stderr
    assert not (run / "README.md").exists()


def test_report_does_not_import_torch(tmp_path):
    run = finished_run(tmp_path, records=metrics())
    assert heavy_modules_after(["report", str(run)]) == [0, []]
