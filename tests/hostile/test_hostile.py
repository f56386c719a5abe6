"""Hostile input through the real `qlorafx` command: every case in cases.py must end with exit code 2,
one short report naming what is wrong and where, no traceback, nothing executed, and nothing written
(the fake finished run the recipes point output_dir at keeps every file, byte and mtime).

The cases run as subprocesses, two at a time, once per session (the slow ones, which import
torch, first); each test then checks its case's outcome.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG as stat_is_file

import pytest

from tests.hostile.cases import CASES, TRAIN_DATA, Case

ETC_PASSWD = Path("/etc/passwd")
WORKERS = max(2, min(4, os.cpu_count() or 2))


def here(text: str, folder: Path) -> str:
    return text.replace("@DIR@", str(folder))


def _write(path: Path, content: str | bytes, folder: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(here(content, folder), encoding="utf-8")


def set_up(case: Case, folder: Path) -> None:
    """The case's folder: its recipe and files, valid data, a finished run and a folder that is no run."""
    _write(folder / "data" / "train.jsonl", TRAIN_DATA, folder)
    run = folder / "finished-run"
    _write(run / ".qlorafx-run", '{"created_by": "qlorafx", "written": ["adapter/adapter_model.safetensors"]}\n', folder)
    _write(run / "recipe.yaml", "output_dir: finished-run\n", folder)
    _write(run / "run.json", json.dumps({"status": "finished", "steps": 24}) + "\n", folder)
    _write(run / "metrics.jsonl", '{"step": 4, "loss": 1.5}\n', folder)
    _write(run / "adapter" / "adapter_model.safetensors", bytes(range(256)), folder)
    _write(folder / "not-a-run" / "notes.txt", "my notes\n", folder)
    for name, content in case.files.items():
        _write(folder / name, content, folder)
    for name, target in case.links.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(target)
    for name in case.fifos:
        os.mkfifo(folder / name)
    if "recipe.yaml" not in case.links:
        _write(folder / "recipe.yaml", case.recipe, folder)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file, folder and link below ``folder``: kind, size, mtime and (for plain files) a hash of the bytes."""
    found = {}
    for path in sorted(folder.rglob("*")):
        stat = path.lstat()
        plain = stat_is_file(stat.st_mode)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if plain else None
        found[str(path.relative_to(folder))] = (stat.st_mode, stat.st_size, stat.st_mtime_ns, digest)
    return found


@dataclass
class Outcome:
    folder: Path
    returncode: int | None
    stdout: str
    stderr: str
    before: dict
    after: dict


def run_case(case: Case, folder: Path, env: dict[str, str]) -> Outcome:
    set_up(case, folder)
    argv = [sys.executable, "-m", "qlorafx.cli.main", case.command, "recipe.yaml", *case.flags,
            *(here(o, folder) for o in case.overrides)]
    before = snapshot(folder)
    try:
        done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, encoding="utf-8", errors="replace",
                              timeout=240 if case.slow else 90)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as timeout:
        code, out, err = None, str(timeout.stdout or ""), f"timed out after {timeout.timeout} s"
    return Outcome(folder, code, out, err, before, snapshot(folder))


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """The selected cases' outcomes, run two (or more) at a time, slow ones first."""
    selected = {item.callspec.params["case"].id for item in request.session.items
                if getattr(item, "originalname", None) == "test_hostile_input" and hasattr(item, "callspec")}
    root = tmp_path_factory.mktemp("hostile")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "QLORAFX_CACHE": str(root / "cache")}
    cases = sorted((c for c in CASES if c.id in selected), key=lambda c: not c.slow)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {c.id: pool.submit(run_case, c, root / c.id, env) for c in cases}
    return {case_id: future.result() for case_id, future in futures.items()}


def _params() -> list:
    return [pytest.param(case, id=case.id, marks=[pytest.mark.xfail(reason=f"known bug: {case.xfail}", strict=True)]
                         if case.xfail else []) for case in CASES]


def _forbidden(case: Case, folder: Path) -> list[str]:
    """What must not show: the case's ``absent`` texts; for "/etc/passwd", its lines after the first."""
    texts = []
    for text in case.absent:
        if text == str(ETC_PASSWD):
            lines = ETC_PASSWD.read_text().splitlines()[1:] if ETC_PASSWD.is_file() else []
            texts += [line for line in lines if len(line) > 12]
        else:
            texts.append(here(text, folder))
    return texts


@pytest.mark.parametrize("case", _params())
def test_hostile_input(case: Case, outcomes: dict[str, Outcome]):
    out = outcomes[case.id]
    shown = f"exit {out.returncode}\n--- stderr ---\n{out.stderr[-3000:]}\n--- stdout ---\n{out.stdout[-1000:]}"
    assert "Traceback" not in out.stderr + out.stdout, shown
    assert out.returncode == 2, shown

    # one short report: 'error: ...' then, for a recipe, one indented line per problem
    lines = out.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), shown
    assert all(line.startswith("  ") for line in lines[1:]), shown
    assert len(lines) <= case.max_lines, shown
    assert len(out.stderr) <= 500 * case.max_lines, shown
    for expected in case.expect:  # what is wrong, and where: the dotted key, file:line, or data file and line
        assert here(expected, out.folder) in out.stderr, f"expected {here(expected, out.folder)!r} in\n{shown}"
    assert out.stdout == "", shown

    for secret in _forbidden(case, out.folder):
        assert secret not in out.stderr + out.stdout, f"{secret!r} shows in the output:\n{shown}"
    assert not (out.folder / "PWNED").exists(), "a Python-object payload ran"
    changed = sorted(k for k in out.before.keys() | out.after.keys() if out.before.get(k) != out.after.get(k))
    assert not changed, f"written or changed in the case folder (the run directory among them?): {changed}"


def test_the_table_covers_enough():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 40
    assert {case.command for case in CASES} == {"validate", "show", "preprocess", "train"}
    assert any(case.flags == ("--overwrite",) for case in CASES if case.command == "train")


def test_the_fake_run_is_one_train_refuses(tmp_path):
    """The fixture's finished run is what `train` protects: it counts as a finished run."""
    from qlorafx.train.run_dir import is_finished

    set_up(CASES[0], tmp_path)
    assert is_finished(tmp_path / "finished-run")


def test_a_byte_order_mark_is_not_hostile(tmp_path):
    """UTF-8 with a BOM (Excel, Notepad) reads as UTF-8: the mark is neither JSON nor a CSV column's name."""
    from qlorafx.data.sources import read_records

    (tmp_path / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + TRAIN_DATA.encode())
    (tmp_path / "a.csv").write_bytes(b"\xef\xbb\xbfinstruction,output\nSay hi.,Hi.\n")
    assert read_records(tmp_path / "a.jsonl")[0]["instruction"] == "Say hi."
    assert read_records(tmp_path / "a.csv") == [{"instruction": "Say hi.", "output": "Hi."}]
