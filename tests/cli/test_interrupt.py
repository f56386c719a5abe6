"""A real signal to a real `qlorafx train` process: it saves, exits with a way to resume, and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.train.tiny import tiny_recipe

ARGS = ["training.max_steps=400", "training.save_every=1000", "logging.every=1", "logging.backends=[jsonl]",
        "logging.sample_max_new_tokens=0"]


def _start(recipe: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "qlorafx.cli.main", "train", str(recipe), *ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(run: Path, step: int, process: subprocess.Popen, timeout: float = 120) -> None:
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if metrics.is_file() and any(json.loads(l).get("step", 0) >= step for l in metrics.read_text().splitlines() if l):
            return
        time.sleep(0.2)
    raise AssertionError(f"no step {step} within {timeout}s")


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path):
    recipe, run = tiny_recipe(tmp_path), tmp_path / "run"
    process = _start(recipe)
    _wait_for_step(run, 3, process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "stopped: SIGTERM at step" in err and "resume with: qlorafx train RECIPE --resume" in err
    assert "Traceback" not in err
    [checkpoint] = (run / "checkpoints").glob("checkpoint-*")
    stopped_at = int(checkpoint.name.split("-")[1])
    assert stopped_at >= 3 and (checkpoint / "qlorafx_checkpoint.json").is_file()
    assert not (run / "run.json").exists()

    refused = subprocess.run([sys.executable, "-m", "qlorafx.cli.main", "train", str(recipe), *ARGS],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "already holds an unfinished run" in refused.stderr

    resumed = subprocess.run([sys.executable, "-m", "qlorafx.cli.main", "train", str(recipe), *ARGS[1:],
                              "training.max_steps=" + str(stopped_at + 3), "--resume", "--force"],
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {checkpoint}" in resumed.stdout + resumed.stderr
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert steps == list(range(1, stopped_at + 4))  # continues; no step twice, none missing
    assert json.loads((run / "run.json").read_text())["steps"] == stopped_at + 3


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    recipe, run = tiny_recipe(tmp_path), tmp_path / "run"
    process = _start(recipe)
    _wait_for_step(run, 2, process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)  # two signals sent at once can merge into one; a person's second Ctrl-C comes later
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = process.communicate(timeout=60)
    # at once: KeyboardInterrupt (exit 130) or the signal's default action (killed by SIGINT)
    assert process.returncode in (130, -signal.SIGINT) and time.monotonic() - started < 30
    assert "Traceback" not in err and not (run / "run.json").exists()


# --- Ctrl-C during start-up: the libraries import for seconds before training starts --------------------------

# Loaded into the `qlorafx train` process by Python itself (sitecustomize): the first time a `regex` parse-tree
# node is finalized (transformers compiles patterns with `regex` while it imports), SIGINT arrives right inside
# its __del__, which is where a real Ctrl-C 3.5 s into `qlorafx train` was lost ("Exception ignored in:
# <function Group.__del__>", then a full training run and exit 0).
CTRL_C_IN_A_FINALIZER = """\
import os, signal
import regex._regex_core as core

original = core.Group.__del__


def __del__(self):
    core.Group.__del__ = original  # once
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(100_000):  # the handler runs here, inside the finalizer
        pass
    original(self)


core.Group.__del__ = __del__
"""


def _maps(process: subprocess.Popen) -> str:
    try:
        return Path(f"/proc/{process.pid}/maps").read_text()
    except OSError:
        return ""


def _assert_stopped_before_training(process: subprocess.Popen, run: Path, timeout: float = 120) -> str:
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    assert not (run / "run.json").exists() and not (run / "checkpoints").exists()
    assert not (run / "metrics.jsonl").exists() or '"loss"' not in (run / "metrics.jsonl").read_text()
    return err


def test_ctrl_c_inside_a_finalizer_during_the_imports_still_stops(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(CTRL_C_IN_A_FINALIZER)
    recipe, run = tiny_recipe(tmp_path), tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "qlorafx.cli.main", "train", str(recipe), "training.max_steps=2",
                                "logging.backends=[jsonl]"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    err = _assert_stopped_before_training(process, run)
    assert err.strip().splitlines()[-1] == "interrupted"
    assert not run.exists()  # stopped before anything was written


@pytest.mark.parametrize("moment", ["importing transformers", "importing torch", "building the model"])
def test_ctrl_c_at_any_moment_of_start_up_stops_with_130(tmp_path, moment):
    recipe, run = tiny_recipe(tmp_path), tmp_path / "run"
    reached = {
        "importing transformers": lambda p: "/regex/_regex" in _maps(p),  # transformers imports regex first
        "importing torch": lambda p: "libtorch_cpu" in _maps(p) or "libtorch_cuda" in _maps(p),
        "building the model": lambda p: (run / "recipe.yaml").exists(),  # the run directory is being written
    }[moment]
    process = _start(recipe)
    deadline = time.monotonic() + 120
    while not reached(process):
        assert process.poll() is None and time.monotonic() < deadline, f"never reached {moment}"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _assert_stopped_before_training(process, run)
