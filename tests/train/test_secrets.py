"""Secrets and network, through the real `qlorafx train`.

Tokens given by environment variable never reach a saved file, the log or the console; `${...}` in a
recipe stays literal. The tiny from_config recipe needs nothing from the network (a guard in the
process records, and refuses, every attempt to resolve or reach a remote host), with or without
HF_HUB_OFFLINE; a recipe that needs the hub fails at once, with exit code 2 and a message naming
model.path, when HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.train.tiny import tiny_recipe

MARKERS = {
    "HF_TOKEN": "hf_qlorafxSecretMarker7Qx2",
    "WANDB_API_KEY": "qlorafx-wandb-secret-marker-4f81c2",
    "OPENAI_API_KEY": "sk-qlorafx-secret-marker-93bd0e",
}
SHORT = ["training.max_steps=4", "logging.every=2", "logging.sample_max_new_tokens=4"]
# Left out of the runs' environment: offline switches, telemetry opt-outs (so "no network" holds without
# them) and hub caches other than the empty one each test makes.
UNSET = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK",
         "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_DATASETS_CACHE")

# Runs the CLI with the network cut: resolving or connecting to anything but this machine is
# recorded in the log file (argv[1]) and refused.
GUARD = """
import runpy, socket, sys

LOG = sys.argv.pop(1)
LOCAL = {None, "localhost", "127.0.0.1", "::1", b"localhost", b"127.0.0.1"}

def deny(what):
    with open(LOG, "a") as log:
        log.write(what + "\\n")
    raise OSError(f"network access refused by the test: {what}")

def remote(sock, address):
    return sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL

connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

def guarded_connect(self, address):
    if remote(self, address):
        deny(f"connect {address!r}")
    return connect(self, address)

def guarded_connect_ex(self, address):
    if remote(self, address):
        deny(f"connect {address!r}")
    return connect_ex(self, address)

def guarded_getaddrinfo(host, *args, **kwargs):
    if host not in LOCAL:
        deny(f"resolve {host!r}")
    return getaddrinfo(host, *args, **kwargs)

socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = guarded_connect, guarded_connect_ex, guarded_getaddrinfo
runpy.run_module("qlorafx.cli.main", run_name="__main__", alter_sys=True)
"""


def train(tmp_path: Path, recipe: Path, *overrides: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float, str]:
    """`qlorafx train` with the network guard: the finished process, its seconds, and what the guard saw."""
    log = tmp_path / "network.log"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", GUARD, str(log), "train", str(recipe), *overrides],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    return done, time.perf_counter() - started, log.read_text() if log.exists() else ""


def environment(tmp_path: Path, offline: bool, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET and k not in MARKERS}
    env["HF_HOME"] = str(tmp_path / "hf-home")  # an empty hub cache: nothing can come from an earlier download
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return {**env, **extra}


def test_secrets_never_reach_the_run_directory_or_the_log_and_no_network_is_needed(tmp_path):
    """HF_HUB_OFFLINE unset, no telemetry opt-out: the tiny run trains with the network cut, and never tries it."""
    recipe = tiny_recipe(tmp_path, extra="description: 'token: ${oc.env:HF_TOKEN} and ${oc.env:WANDB_API_KEY}'\n")
    done, _, network = train(tmp_path, recipe, *SHORT, env=environment(tmp_path, offline=False, **MARKERS))
    assert done.returncode == 0, done.stderr[-3000:]
    assert network == "", f"the run tried to reach the network:\n{network}"

    run_dir = tmp_path / "run"
    saved = (run_dir / "recipe.yaml").read_text()
    assert "token: ${oc.env:HF_TOKEN} and ${oc.env:WANDB_API_KEY}" in saved  # kept literally, never interpolated
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {"recipe.yaml", "run.json", "metrics.jsonl", "versions.json"} <= {p.name for p in files}
    for name, marker in MARKERS.items():
        assert marker not in done.stdout + done.stderr, f"{name} shows in the console output"
        leaked = [str(p.relative_to(run_dir)) for p in files if marker.encode() in p.read_bytes()]
        assert not leaked, f"{name} leaked into {leaked}"


def test_the_tiny_recipe_trains_with_the_hub_offline(tmp_path):
    lean = ["training.max_steps=2", "data.val_size=0", "logging.sample_max_new_tokens=0", "logging.backends=[console]"]
    done, _, network = train(tmp_path, tiny_recipe(tmp_path), *lean, env=environment(tmp_path, offline=True))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "run.json").is_file()
    assert network == ""


def test_a_hub_model_with_the_hub_offline_fails_fast_and_clearly(tmp_path):
    # a hub base brings its own config: the tiny one goes (a model.config beside it is refused)
    recipe = re.sub(r"  config: \{.*?\}\n", "", tiny_recipe(tmp_path).read_text(), count=1, flags=re.S)
    recipe = recipe.replace("loader: from_config", "loader: pretrained\n  path: meta-llama/Llama-3.1-8B")
    (tmp_path / "hub.yaml").write_text(recipe)
    # about 10 s on an idle 2-core machine (importing torch); the network wait this guards against is a minute
    limit = 20 * max(1.0, min(2.0, os.getloadavg()[0] / (os.cpu_count() or 1)))
    done, seconds, network = train(tmp_path, tmp_path / "hub.yaml", env=environment(tmp_path, offline=True))
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and len(done.stderr) < 1000, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "error: model.path 'meta-llama/Llama-3.1-8B': cannot load its tokenizer: it is not a local folder, and the hub "
        "is offline (HF_HUB_OFFLINE=1) with no cached copy; download it once with the hub reachable, or point it at a "
        "local folder")
    assert seconds < limit, f"took {seconds:.0f} s"
    assert network == ""
    assert not (tmp_path / "run").exists()
