"""`qlorafx serve --ui` as a user starts it: gradio is imported by no command that does not show the
page; --ui's refusals come before any weight loads (exit 2, one line); and a real start serves the
page beside the API on one port, behind the API key when there is one, with analytics off."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from qlorafx.cli import serve as serve_cli
from qlorafx.cli.main import main
from tests.cli.test_cli import HEAVY, QUICKSTART, heavy_modules_after
from tests.infer.finished import finished_chat_run, finished_run


def gradio_imported(code: str) -> bool:
    """Whether running ``code`` in a fresh interpreter imports gradio."""
    probe = textwrap.dedent(code) + "\nimport sys\nprint('gradio' in sys.modules, file=sys.__stderr__)\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    return done.stderr.strip().splitlines()[-1] == "True"


def test_only_the_page_imports_gradio(tmp_path):
    for argv in (["--help"], ["serve", "--help"], ["validate", str(QUICKSTART)], ["serve", str(tmp_path / "no-run")]):
        code = f"from qlorafx.cli.main import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
        assert not gradio_imported(code), argv
    # the server, the page's logic and the kept-chats file work without it; the page itself needs it
    assert not gradio_imported("import qlorafx.serve.app, qlorafx.serve.webchat, qlorafx.serve.kept")
    assert gradio_imported("import qlorafx.serve.page")


def test_ui_refusals_come_before_weights_load(tmp_path, monkeypatch, capsys):
    run = tmp_path / "no-run"  # never read: the --ui checks come first
    cases = [(tmp_path / "missing" / "chats.jsonl", "the folder"),
             (tmp_path, "is a folder; give a .jsonl file"),
             (tmp_path / "chats.txt", "the file must end in .jsonl"),
             (tmp_path / "alpaca.jsonl", "line 1 is not a chat-format conversation")]
    (tmp_path / "alpaca.jsonl").write_text('{"instruction": "Hi", "input": "", "output": "Hello"}\n')
    for keep, message in cases:
        rc, heavy = heavy_modules_after(["serve", str(run), "--ui", "--keep", str(keep)])
        assert rc == 2 and not {m for m in heavy if m.split(".")[0] in HEAVY}
        assert main(["serve", str(run), "--ui", "--keep", str(keep)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --keep") and message in err and "Traceback" not in err

    real = serve_cli.find_spec
    monkeypatch.setattr(serve_cli, "find_spec", lambda name: None if name == "gradio" else real(name))
    assert main(["serve", str(run), "--ui", "--keep", str(tmp_path / "chats.jsonl")]) == 2
    assert "--ui needs gradio: pip install 'qlorafx[ui]'" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_ui_serves_the_page_beside_the_api_behind_the_key(tmp_path_factory, tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "QLORAFX_TEST_KEY": "s3cret"}
    server = subprocess.Popen([sys.executable, "-m", "qlorafx.cli.main", "serve", f"a={finished_run(tmp_path_factory)}",
                               f"c={finished_chat_run(tmp_path_factory)}", "--port", str(port), "--ui",
                               "--keep", str(tmp_path / "chats.jsonl"), "--api-key-env", "QLORAFX_TEST_KEY"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.poll() else ""
            time.sleep(0.2)
        models = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret"}).json()
        assert [m["id"] for m in models["data"]] == ["base_model", "a", "c"]  # the API is there, unchanged

        home = httpx.get(f"{url}/")
        assert home.status_code == 307 and home.headers["location"] == "/ui/"
        assert httpx.get(f"{url}/ui/").status_code == 200  # the page, which asks for the key first
        assert httpx.get(f"{url}/ui/config").status_code == 401
        with httpx.Client(base_url=url) as browser:
            assert browser.post("/ui/login", data={"username": "me", "password": "wrong"}).status_code == 400
            assert browser.post("/ui/login", data={"username": "me", "password": "s3cret"}).status_code == 200
            config = browser.get("/ui/config").json()
        assert config["analytics_enabled"] is False and config["title"] == "qlorafx chat"
        dropdowns = [c["props"] for c in config["components"] if c["props"].get("elem_id") == "model"]
        assert [choice[0] for choice in dropdowns[0]["choices"]] == ["a", "c", "base_model"]
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    assert f"chat page at http://127.0.0.1:{port}/ui/ (kept conversations go to {tmp_path / 'chats.jsonl'})" in stderr
    assert server.returncode == 130 and "s3cret" not in stderr
