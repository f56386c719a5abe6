"""Checkpoints and exact resume: an interrupted run, resumed, ends as the uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from qlorafx.recipe.load import load_recipe
from qlorafx.train import checkpoints
from qlorafx.train.checkpoints import AlreadyFinished, ResumeError
from qlorafx.train.lifecycle import Diverged, LossGuard
from qlorafx.finetune import Interrupted, train
from tests.train.tiny import tiny_recipe

QUIET = ["logging.every=1", "logging.backends=[jsonl]", "logging.sample_max_new_tokens=0"]


def _load(tmp_path, *overrides):
    tmp_path.mkdir(exist_ok=True)
    return load_recipe(tiny_recipe(tmp_path), ["training.max_steps=8", "training.save_every=3", *QUIET, *overrides])


def _train(loaded, **kwargs):
    return train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None, **kwargs)


class SignalAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def _metrics(run_dir):
    return [json.loads(line) for line in open(run_dir / "metrics.jsonl")]


# what makes resuming hard: LoRA dropout (the RNG states must come back), accumulation (the data position
# inside an optimizer step), packing (rows, not examples); shuffling is on, as by default
HARD = ["lora.dropout=0.1", "training.grad_accum=2", "data.packing=true", "data.shuffle=true"]


@pytest.fixture(scope="module")
def straight_and_resumed(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    straight = _load(root / "straight", *HARD)
    _train(straight)
    resumed = _load(root / "resumed", *HARD)
    # the signal lands after step 4 has been seen: the run finishes step 5, saves it and stops
    started = time.perf_counter()
    with pytest.raises(Interrupted, match=r"SIGTERM at step 5: checkpoint saved to .*checkpoint-5; resume with"):
        _train(resumed, callbacks=(SignalAt(4),))
    first = time.perf_counter() - started
    assert not (root / "resumed" / "run" / "run.json").exists()
    _train(resumed, resume=True)
    second = time.perf_counter() - started - first
    (root / "sessions.json").write_text(json.dumps([first, second]))  # for the wall-time test
    return root / "straight" / "run", root / "resumed" / "run"


def test_resumed_run_has_the_same_losses_and_adapter(straight_and_resumed):
    straight, resumed = straight_and_resumed
    want = {r["step"]: r["loss"] for r in _metrics(straight) if "loss" in r}
    got = {r["step"]: r["loss"] for r in _metrics(resumed) if "loss" in r}
    assert list(got) == list(range(1, 9)) == list(want)
    assert max(abs(want[s] - got[s]) for s in want) < 1e-5
    evals = [[r["eval_loss"] for r in _metrics(run) if "eval_loss" in r] for run in (straight, resumed)]
    assert len(evals[0]) == 2 and evals[0] == pytest.approx(evals[1], abs=1e-5)
    a, b = (load_file(run / "adapter" / "adapter_model.safetensors") for run in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    summary = json.loads((resumed / "run.json").read_text())
    assert summary["steps"] == 8 and summary["eval_loss_before"] == evals[0][0]


def test_checkpoints_are_complete_and_bounded(straight_and_resumed):
    straight, _ = straight_and_resumed
    kept = checkpoints.complete(straight)
    assert [p.name for p in kept] == ["checkpoint-6", "checkpoint-8"]  # keep_checkpoints: 2
    for path in kept:
        names = set(os.listdir(path))
        assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json",
                checkpoints.MARKER} <= names and any(n.startswith("rng_state") for n in names)
    assert not checkpoints.staging_dir(straight).exists()


def test_a_finished_run_is_not_retrained(straight_and_resumed):
    straight, _ = straight_and_resumed
    loaded = load_recipe(straight / "recipe.yaml")
    with pytest.raises(AlreadyFinished, match="holds a finished run"):
        _train(loaded, resume=True)


def test_resume_with_changed_settings_is_refused_unless_forced(tmp_path):
    loaded = _load(tmp_path / "a")
    with pytest.raises(Interrupted):
        _train(loaded, callbacks=(SignalAt(3),))
    changed = _load(tmp_path / "a", "optimizer.lr=0.001", "logging.every=2")
    with pytest.raises(ResumeError) as refused:
        _train(changed, resume=True)
    assert "optimizer.lr: 0.02 in the checkpoint, 0.001 now" in str(refused.value)
    assert "logging" not in str(refused.value) and "pass --force" in str(refused.value)
    assert _train(changed, resume=True, force=True).summary.steps == 8


def test_half_written_checkpoints_are_never_resumed_from(tmp_path):
    loaded = _load(tmp_path / "a")
    with pytest.raises(Interrupted):
        _train(loaded, callbacks=(SignalAt(3),))
    run = tmp_path / "a" / "run"
    half = checkpoints.checkpoints_dir(run) / "checkpoint-7"
    half.mkdir()
    (half / "optimizer.pt").write_bytes(b"truncated")
    assert checkpoints.find(run, None).name == "checkpoint-4"
    with pytest.raises(ResumeError, match="is not a complete qlorafx checkpoint"):
        checkpoints.find(run, str(half))


def test_resume_without_a_checkpoint_says_so(tmp_path):
    loaded = _load(tmp_path / "a")
    with pytest.raises(ResumeError, match="holds no qlorafx run to resume"):
        _train(loaded, resume=True)


class PoisonAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                next(p for n, p in model.named_parameters() if "lora_B" in n).fill_(float("nan"))


def test_nan_loss_stops_with_a_diagnosis(tmp_path):
    loaded = _load(tmp_path / "a")
    with pytest.raises(Diverged) as err:
        _train(loaded, callbacks=(PoisonAt(4),))
    message = str(err.value)
    assert "the training loss became nan at step 5" in message
    assert "the last good checkpoint is" in message and "checkpoint-3" in message and "lower optimizer.lr" in message
    assert not (tmp_path / "a" / "run" / "checkpoints" / "checkpoint-6").exists()
    assert not (tmp_path / "a" / "run" / "run.json").exists()


def test_zero_loss_warns_once():
    lines = []
    guard = LossGuard(lines.append)

    class State:
        global_step = 7

    control = type("Control", (), {"should_training_stop": False})()
    for _ in range(2):
        guard.on_log(None, State, control, logs={"loss": 0.0})
    assert len(lines) == 1 and "loss is exactly 0 at step 7: are all labels masked?" in lines[0]
    assert not control.should_training_stop


def test_a_resumed_runs_time_and_mean_loss_cover_the_whole_run(straight_and_resumed):
    """wall_seconds adds the time before the interruption (kept with each checkpoint); the train_loss
    record is the mean over all 8 steps, as the straight run's, not over the 3 after the resume."""
    straight, resumed = straight_and_resumed
    first, second = json.loads((resumed.parent.parent / "sessions.json").read_text())
    summary = json.loads((resumed / "run.json").read_text())
    assert summary["wall_seconds"] >= second + 0.5 * first  # before: the second session's time alone
    [want], [got] = ([r["train_loss"] for r in _metrics(run) if "train_loss" in r] for run in (straight, resumed))
    assert got == pytest.approx(want, abs=1e-5)
    losses = [r["loss"] for r in _metrics(straight) if "loss" in r]
    assert want == pytest.approx(sum(losses) / len(losses), abs=1e-6)
