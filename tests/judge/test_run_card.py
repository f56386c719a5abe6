"""A contestant that is a qlorafx run: its run.json and model card get the comparison's figures."""

from __future__ import annotations

import json

from qlorafx.cli.main import main
from tests.judge.conftest import write_comparison
from tests.report.finished_run import finished_run, metrics


def test_a_runs_model_card_shows_its_judged_figures(server, tmp_path, capsys):
    (tmp_path / "train").mkdir()
    run = finished_run(tmp_path / "train", records=metrics())
    path = write_comparison(tmp_path, server.url, contestants=())
    path.write_text(path.read_text().replace("contestants:\n", f"contestants:\n  - {{name: mine, endpoint: fake, model: long, "
                                                               f"run: {run}}}\n  - {{name: base, endpoint: fake, model: short}}\n"))
    assert main(["judge", str(path)]) == 0
    assert main(["judge", str(path)]) == 0  # a rerun replaces its entry, it does not add one
    assert len(server.contestant_requests()) == 8  # and asks for no answer again: the entry is not the run's identity
    [entry] = json.loads((run / "run.json").read_text())["judged"]
    assert (entry["contestant"], entry["rank"], entry["of"], entry["opponents"]) == ("mine", 1, 2, ["base"])
    assert (entry["wins"], entry["ties"], entry["losses"], entry["judge"], entry["questions"]) == (4, 0, 0, "longer", 4)
    assert entry["comparison"] == str(tmp_path / "out")
    card = (run / "README.md").read_text()
    assert "Judged comparisons (`qlorafx judge`" in card
    elo = entry["elo"]
    row = (f"| `{tmp_path / 'out'}` | longer (pairwise, 4 questions) | base | 1 of 2 | {elo['value']:.0f} [{elo['low']:.0f}, "
           f"{elo['high']:.0f}] | 4 / 0 / 0 | 100.0% [100.0%, 100.0%] |  |")
    assert row in card
    assert json.loads((run / "run.json").read_text())["status"] == "finished"  # the rest of run.json is kept


def test_an_unfinished_run_is_refused_before_any_request(server, tmp_path, capsys):
    (tmp_path / "train").mkdir()
    run = finished_run(tmp_path / "train")
    (run / "run.json").unlink()
    path = write_comparison(tmp_path, server.url, contestants=())
    path.write_text(path.read_text().replace("contestants:\n", f"contestants:\n  - {{name: mine, endpoint: fake, run: {run}}}\n"
                                                               f"  - {{name: base, endpoint: fake, model: short}}\n"))
    assert main(["judge", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: 1 problem:\n  contestants.0.run ({path}:6): {run} holds an unfinished run")
    assert server.log == []
