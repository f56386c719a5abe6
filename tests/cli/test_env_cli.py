"""qlorafx env: one block of text (or JSON) to paste into a bug report."""

from __future__ import annotations

import json
import re
from importlib import metadata

from qlorafx.cli.main import main
from tests.cli.test_cli import qlorafx


def test_env_text():
    done = qlorafx("env")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in ("torch", "transformers", "peft", "bitsandbytes", "accelerate"):
        assert f"{name}: {metadata.version(name)}" in lines
    assert lines[0].startswith("python: 3.")
    assert "devices:" in lines
    assert re.match(r"4-bit on (cpu|cuda): ok: nf4 Linear4bit \(double quant\) forward and backward agree", lines[-1])


def test_env_json(capsys):
    assert main(["env", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["versions"]["bitsandbytes"] == metadata.version("bitsandbytes")
    assert found["4bit"]["ok"] is True and found["4bit"]["device"] in ("cpu", "cuda")
    assert found["devices"][0].startswith("cpu: ")


def test_env_exits_1_when_4bit_fails(capsys, monkeypatch):
    import bitsandbytes.nn

    monkeypatch.setattr(bitsandbytes.nn, "Linear4bit", None)  # calling it raises TypeError
    assert main(["env"]) == 1
    assert re.match(r"4-bit on (cpu|cuda): FAILED: TypeError: ", capsys.readouterr().out.splitlines()[-1])
