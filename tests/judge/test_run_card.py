"""A contestant that is a qlorafx run: its run.json and model card get the comparison's figures."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_a_run_moved_elsewhere_keeps_its_cached_answers(server, tmp_path, capsys):
    """The answers' cache key holds run.json as training left it: a copied or moved run (run.json copied with it)
    answers from the cache; a run trained again (another run.json) answers again. Backs answers.py's claim."""
    import shutil

    from tests.report.finished_run import STATUS

    (tmp_path / "train").mkdir()
    run = finished_run(tmp_path / "train", records=metrics())
    (run / "run.json").write_text(json.dumps({**STATUS, "run_dir": str(run)}))
    path = write_comparison(tmp_path, server.url, contestants=())
    path.write_text(path.read_text().replace("contestants:\n", f"contestants:\n  - {{name: mine, endpoint: fake, model: long, "
                                                               f"run: {run}}}\n  - {{name: base, endpoint: fake, model: short}}\n"
                                             ).replace("output_dir:", f"cache: {tmp_path / 'cache.sqlite'}\noutput_dir:"))
    assert main(["judge", str(path)]) == 0
    assert len(server.contestant_requests()) == 8
    (tmp_path / "moved").mkdir()
    moved = Path(shutil.copytree(run, tmp_path / "moved" / run.name))
    path.write_text(path.read_text().replace(f"run: {run}}}", f"run: {moved}}}"))
    assert main(["judge", str(path), f"output_dir={tmp_path / 'out2'}"]) == 0
    assert len(server.contestant_requests()) == 8  # no answer asked again
    assert [e["contestant"] for e in json.loads((moved / "run.json").read_text())["judged"]] == ["mine", "mine"]
    (moved / "run.json").write_text(json.dumps({**STATUS, "run_dir": str(moved), "wall_seconds": 99.0}))
    assert main(["judge", str(path), f"output_dir={tmp_path / 'out3'}"]) == 0
    assert len(server.contestant_requests()) == 12  # trained again (another run.json): its 4 answers asked again
