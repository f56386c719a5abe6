"""`qlorafx serve` as a user starts it: help without torch or the web stack, refusals before any
weight loads (exit 2, one line), and a real start on a free port that answers and stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.cli.test_cli import HEAVY, heavy_modules_after, qlorafx
from tests.infer.finished import finished_chat_run, finished_run

WEB = ("fastapi", "uvicorn", "starlette", "openai")


def test_help_imports_neither_torch_nor_the_web_stack():
    for argv in (["--help"], ["serve", "--help"]):
        rc, heavy = heavy_modules_after(argv)
        assert rc == 0 and heavy == []
        code = f"import sys; from qlorafx.cli.main import main\ntry: main({argv!r})\nexcept SystemExit: pass\n" \
               f"print(sorted(m for m in sys.modules if m.split('.')[0] in {WEB!r}), file=sys.stderr)"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.stderr.strip().splitlines()[-1] == "[]"


def test_bad_runs_and_options_are_refused_before_torch(tmp_path, monkeypatch):
    rc, heavy = heavy_modules_after(["serve", str(tmp_path / "missing")])
    assert rc == 2 and not {m for m in heavy if m.split(".")[0] in HEAVY}
    done = qlorafx("serve", tmp_path / "missing")
    assert done.returncode == 2 and "no such directory" in done.stderr and "Traceback" not in done.stderr
    done = qlorafx("serve", tmp_path, "--api-key-env", "QLORAFX_TEST_UNSET_KEY")
    assert done.returncode == 2 and "QLORAFX_TEST_UNSET_KEY is not set or empty" in done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = qlorafx("serve", tmp_path, "--port", taken.getsockname()[1])
    assert done.returncode == 2 and "cannot listen on 127.0.0.1" in done.stderr


def test_runs_with_the_same_name_are_refused(tmp_path_factory):
    run = finished_run(tmp_path_factory)
    done = qlorafx("serve", run, run)
    assert done.returncode == 2 and f"two runs are named {run.name!r}" in done.stderr and "NAME=RUN_DIR" in done.stderr


@pytest.mark.slow
def test_serve_starts_answers_and_stops_on_ctrl_c(tmp_path_factory):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {**os.environ, "QLORAFX_TEST_KEY": "s3cret"}
    server = subprocess.Popen([sys.executable, "-m", "qlorafx.cli.main", "serve", f"a={finished_run(tmp_path_factory)}",
                               f"c={finished_chat_run(tmp_path_factory)}", "--port", str(port),
                               "--api-key-env", "QLORAFX_TEST_KEY"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.poll() else ""
            time.sleep(0.2)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer s3cret"}).json()
        assert [m["id"] for m in models["data"]] == ["base_model", "a", "c"]
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 130 and "Application shutdown complete" in stderr, stderr  # 130: as every command on Ctrl-C
    assert "s3cret" not in stderr  # the key never reaches the log
