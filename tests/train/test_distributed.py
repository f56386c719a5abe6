"""Data-parallel training in two CPU processes (torchrun, gloo): it finishes, only rank 0 writes the
run directory, and its losses follow a one-process run with the same global batch, with the defaults
(packing and shuffling on): the processes split each global batch of the one seeded order."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import qlorafx
from tests.train.tiny import tiny_recipe

COMMON = ["training.max_steps=12", "logging.every=2", "logging.sample_max_new_tokens=0",
          "logging.backends=[jsonl]", "data.val_size=16"]


def _tokens_seen(run_dir):
    """Non-padding tokens trained on, as the last checkpoint's trainer state counts them."""
    [state] = run_dir.glob("checkpoints/checkpoint-12/trainer_state.json")
    return json.loads(state.read_text())["num_input_tokens_seen"]


def _losses(run_dir):
    records = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return [r["loss"] for r in records if "loss" in r], [r["eval_loss"] for r in records if "eval_loss" in r]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir(), two_dir.mkdir()
    one = qlorafx("train", tiny_recipe(one_dir), *COMMON, "training.micro_batch_size=8", timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = qlorafx("train", tiny_recipe(two_dir), *COMMON, "training.micro_batch_size=4", "--nproc", "2", timeout=300)
    assert two.returncode == 0, [l for l in two.stderr.splitlines() if "error" in l.lower()][:10]
    assert two.stdout.count("done: 12 steps") == 1  # rank 0 reports; rank 1 stays quiet

    run = two_dir / "run"
    assert json.loads((run / "run.json").read_text())["steps"] == 12
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))  # one writer: no record twice
    assert not list(tmp_path.glob("two/**/rng_state_1.pth.tmp*"))

    (loss_1, eval_1), (loss_2, eval_2) = _losses(one_dir / "run"), _losses(run)
    assert len(loss_1) == len(loss_2) == 6 and loss_2[-1] < 0.8 * loss_2[0]
    # gradients are averaged across the processes: the first step's loss is equal to 6 decimals, and
    # float rounding in the all-reduce, amplified by Adam at lr 2e-2, leaves them 6e-4 apart after 12
    # steps, the evaluation after them 2e-3 (measured); a run whose processes trained apart would
    # drift by tenths
    assert abs(loss_1[0] - loss_2[0]) < 1e-5 and eval_1[0] == pytest.approx(eval_2[0], abs=1e-6)
    assert max(abs(a - b) for a, b in zip(loss_1, loss_2)) < 2e-3, (loss_1, loss_2)
    assert max(abs(a - b) for a, b in zip(eval_1, eval_2)) < 5e-3, (eval_1, eval_2)
    # the tokens trained on (what tokens_per_s counts) are every process's, not rank 0's alone
    assert _tokens_seen(run) == _tokens_seen(one_dir / "run") > 0
