"""Data-parallel training under torchrun with gloo on CPU, with the defaults (packing and shuffling on):
two processes on one machine follow a one-process run with the same global batch (the processes split
each global batch of the one seeded order); two machines (two launchers on loopback, one process each)
train exactly as two processes on one machine, stop together when one machine gets SIGTERM, refuse to
resume with another number of processes, and resume with the same number. Only rank 0 writes the run
directory."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.cli.test_cli import qlorafx
from tests.train.conftest import PARALLEL, losses_by_step
from tests.train.tiny import tiny_recipe

pytestmark = pytest.mark.slow


def _tokens_seen(run_dir):
    """Non-padding tokens trained on, as the last checkpoint's trainer state counts them."""
    [state] = run_dir.glob("checkpoints/checkpoint-12/trainer_state.json")
    return json.loads(state.read_text())["num_input_tokens_seen"]


def test_two_processes_match_one_with_the_same_global_batch(one_process, two_processes):
    (one, _), (run, two) = one_process, two_processes
    assert two.stdout.count("done: 12 steps") == 1  # rank 0 reports; rank 1 stays quiet

    assert json.loads((run / "run.json").read_text())["steps"] == 12
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))  # one writer: no record twice
    assert not list(run.parent.glob("**/rng_state_1.pth.tmp*"))
    # rank 1 builds its copy of the tiny from_config base in a temporary folder; it is gone once loaded
    assert not list((run.parent / "tmp").glob("qlorafx-base-*"))

    (loss_1, eval_1), (loss_2, eval_2) = losses_by_step(one), losses_by_step(run)
    assert list(loss_1) == list(loss_2) == [2, 4, 6, 8, 10, 12] and loss_2[12] < 0.8 * loss_2[2]
    # gradients are averaged across the processes: the first logged loss is equal to 6 decimals, and
    # float rounding in the all-reduce, amplified by Adam at lr 2e-2, leaves them 6e-4 apart after 12
    # steps, the evaluation after them 2e-3 (measured); a run whose processes trained apart would
    # drift by tenths
    assert abs(loss_1[2] - loss_2[2]) < 1e-5 and eval_1[0] == pytest.approx(eval_2[0], abs=1e-6)
    assert max(abs(loss_1[s] - loss_2[s]) for s in loss_1) < 2e-3, (loss_1, loss_2)
    assert max(abs(eval_1[s] - eval_2[s]) for s in eval_1) < 5e-3, (eval_1, eval_2)
    # the tokens trained on (what tokens_per_s counts) are every process's, not rank 0's alone
    assert _tokens_seen(run) == _tokens_seen(one) > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _machines(recipe, *extra: str) -> list[subprocess.Popen]:
    """Two launchers as two machines would run them: machine 0 hosts the rendezvous on loopback."""
    port = _free_port()
    return [subprocess.Popen([sys.executable, "-m", "qlorafx.cli.main", "train", str(recipe), *PARALLEL,
                              "training.micro_batch_size=4", *extra, "--nnodes", "2", "--node-rank", str(rank),
                              "--master-addr", "127.0.0.1", "--master-port", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]


def test_two_machines_train_as_two_processes_stop_together_and_resume(tmp_path, two_processes):
    recipe, run = tiny_recipe(tmp_path), tmp_path / "run"
    # long enough that the signal lands mid-run; the resume below ends it at step 12, as the reference
    nodes = _machines(recipe, "training.max_steps=400", "training.save_every=1000")
    deadline = time.monotonic() + 240
    while not ((run / "metrics.jsonl").is_file() and '"loss"' in (run / "metrics.jsonl").read_text()):
        assert time.monotonic() < deadline and all(n.poll() is None for n in nodes), [n.communicate() for n in nodes]
        time.sleep(0.1)
    nodes[1].send_signal(signal.SIGTERM)  # a scheduler preempting machine 1 only
    (_, err_0), (_, err_1) = (n.communicate(timeout=240) for n in nodes)
    assert [n.returncode for n in nodes] == [130, 130], (err_0[-2000:], err_1[-2000:])
    assert "Traceback" not in err_0 + err_1
    [checkpoint] = (run / "checkpoints").glob("checkpoint-*")
    stopped_at = int(checkpoint.name.split("-")[1])
    assert f"stopped: SIGTERM at step {stopped_at}: checkpoint saved to {checkpoint}" in err_1
    assert f"stopped: SIGTERM (to another process) at step {stopped_at}: checkpoint saved to {checkpoint}" in err_0
    assert json.loads((checkpoint / "qlorafx_checkpoint.json").read_text())["processes"] == 2
    assert 2 <= stopped_at < 12 and not (run / "run.json").exists()

    # 3 processes would read other examples in other batches: refused before any process starts
    refused = qlorafx("train", recipe, *PARALLEL, "training.micro_batch_size=4", "training.max_steps=400",
                      "training.save_every=1000", "--nproc", "3", "--resume")
    assert refused.returncode == 2
    # by the launcher, before any process started or torch was imported (bitsandbytes would warn on stderr)
    assert refused.stderr.startswith("error: the checkpoint was trained by 2 processes and this run has 3:")

    nodes = _machines(recipe, "--resume", "--force")  # --force: max_steps back to 12, the reference's
    (out_0, err_0), (out_1, err_1) = (n.communicate(timeout=300) for n in nodes)
    assert [n.returncode for n in nodes] == [0, 0], (err_0[-2000:], err_1[-2000:])
    assert "done: 12 steps" in out_0 and "done:" not in out_1  # global rank 0 alone reports and writes

    (loss_machines, eval_machines), (loss_one, eval_one) = losses_by_step(run), losses_by_step(two_processes[0])
    # training is identical; a stop logs the steps since the last record, so a stop between two records
    # adds one (at the stop) and the first record after the resume averages the one step since: the
    # reference averages those two steps in one record, so those two records alone are left out
    gap = {stopped_at, stopped_at + 1} if stopped_at % 2 else set()
    assert list(loss_machines) == sorted(set(loss_one) | {stopped_at})
    assert {s: round(v, 4) for s, v in loss_machines.items() if s not in gap} == \
        {s: round(v, 4) for s, v in loss_one.items() if s not in gap}, (loss_machines, loss_one)
    assert {s: round(v, 4) for s, v in eval_machines.items()} == {s: round(v, 4) for s, v in eval_one.items()}
