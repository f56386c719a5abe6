"""`qlorafx judge` as a real process: killed midway (SIGTERM, then SIGKILL) it resumes without asking
the judge for anything it had answered; it imports no torch; --dry-run counts what is cached."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from qlorafx.cli.main import main
from tests.cli.test_cli import heavy_modules_after
from tests.judge.conftest import _fake_server, server, write_comparison  # noqa: F401  (the fake server's fixtures)


def _start(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "qlorafx.cli.main", "judge", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cached_judgments(path: Path) -> int:
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _wait_until_held(server, process: subprocess.Popen, cache: Path, answered: int, timeout: float = 60) -> None:
    """Until the process waits on a held judgment, with ``answered`` judgments answered and all of them
    in its cache: the moment to kill it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        held = [r for r in server.judge_requests() if r.held and not r.answered]
        done = len(server.judge_requests(answered=True))
        if held and done == answered and _cached_judgments(cache) == answered:
            return
        time.sleep(0.05)
    raise AssertionError("the comparison did not reach the held judgment")


def _key(request) -> str:
    return json.dumps([request.model, request.messages])


def test_killed_midway_it_resumes_without_asking_twice(server, tmp_path):
    path = write_comparison(tmp_path, server.url, judge="longer", questions=4)  # 12 answers, 24 judgments
    path.write_text(path.read_text().replace("max_retries: 0", "max_retries: 0, concurrency: 3"))
    cache = tmp_path / "out" / "cache.sqlite"

    server.hold_judge_after(6)
    first = _start(path)
    _wait_until_held(server, first, cache, answered=6)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert "stopped (SIGTERM): the answers and judgments received so far are cached; rerun the same command to resume" in err
    assert "Traceback" not in err and not (tmp_path / "out" / "results.json").exists()
    assert len(server.judge_requests(answered=True)) == 6

    server.hold_judge_after(8)
    second = _start(path)
    _wait_until_held(server, second, cache, answered=14)
    second.kill()  # SIGKILL: no handler runs at all
    second.wait(timeout=60)
    assert len(server.judge_requests(answered=True)) == 14 == _cached_judgments(cache)

    server.hold_judge_after(None)
    third = subprocess.run([sys.executable, "-m", "qlorafx.cli.main", "judge", str(path)],
                           capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr

    answered = [_key(r) for r in server.judge_requests(answered=True)]
    assert len(answered) == len(set(answered)) == 24  # every judgment answered exactly once, over three runs
    for key in answered:  # asked again only after a kill left it unanswered (held), never once answered
        asks = [r for r in server.judge_requests() if _key(r) == key]
        assert asks[-1].answered and all(r.held and not r.answered for r in asks[:-1])
    assert sum(len([r for r in server.judge_requests() if _key(r) == key]) > 1 for key in answered) >= 2
    assert len(server.contestant_requests()) == 12  # the answers, all from the first run

    # the same figures as a comparison never interrupted
    resumed = json.loads((tmp_path / "out" / "results.json").read_text())
    assert main(["judge", str(path), f"output_dir={tmp_path / 'straight'}"]) == 0
    straight = json.loads((tmp_path / "straight" / "results.json").read_text())
    assert resumed["ranking"] == straight["ranking"] and resumed["pairs"] == straight["pairs"]


def test_judge_imports_no_torch(server, tmp_path):
    path = write_comparison(tmp_path, server.url, contestants=("short", "long"), questions=1)
    assert heavy_modules_after(["judge", str(path)]) == [0, []]
    assert (tmp_path / "out" / "report.md").is_file()


def test_dry_run_counts_what_is_cached_and_asks_for_nothing(server, tmp_path, capsys):
    path = write_comparison(tmp_path, server.url, contestants=("short", "long"), questions=3)
    assert main(["judge", str(path), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "3 questions, 2 contestants, 6 judgments (both orders, all pairs)",
        "answers: 0 cached, 6 to ask for",
        "judgments: up to 6 to ask for (which are cached is known once the answers are)"]
    assert server.log == [] and not (tmp_path / "out").exists()  # a dry run writes nothing
    assert main(["judge", str(path)]) == 0
    capsys.readouterr()
    assert main(["judge", str(path), "judge.model=first", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["answers: 6 cached, 0 to ask for", "judgments: 0 cached, 6 to ask for"]


def test_a_bad_comparison_exits_2_with_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("endpoints: {}\ncontestants: []\njudge: {endpoint: x, model: y}\noutput_dir: out\n")
    done = subprocess.run([sys.executable, "-m", "qlorafx.cli.main", "judge", str(path)], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"endpoints ({path}:1): name at least one endpoint" in done.stderr
    assert f"contestants ({path}:2): list should have at least 2 items after validation" in done.stderr


def test_a_training_run_is_no_output_dir(server, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "recipe.yaml").write_text("model: {}\n")
    path = write_comparison(tmp_path, server.url)
    assert main(["judge", str(path), f"output_dir={tmp_path / 'run'}"]) == 2
    assert "holds a qlorafx training run; give the comparison a folder of its own" in capsys.readouterr().err


def test_without_the_openai_client_it_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['openai'] = None  # as if not installed\n"
            "from qlorafx.cli.main import main; sys.exit(main(['judge', 'c.yaml']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "qlorafx judge needs the OpenAI client: pip install 'qlorafx[judge]'" in done.stderr
