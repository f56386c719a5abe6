"""Trainer callbacks: each Trainer log becomes one metrics record, handed to the recipe's backends.

A record always has ``step``; training logs add ``loss``, ``lr``, ``grad_norm``, ``epoch`` and
``tokens_per_s`` (non-padding tokens per second since the previous log, every process's: the
trainer gathers them), and the last step is always logged; evaluations add ``eval_loss``; the end of
training adds ``train_loss``, the mean over every step of the run. The backends themselves are in train/backends/.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

RENAMES = {"learning_rate": "lr"}
DROPPED = {"num_input_tokens_seen", "train_runtime", "train_samples_per_second", "train_steps_per_second",
           "train_tokens_per_second", "total_flos", "eval_runtime", "eval_samples_per_second",
           "eval_steps_per_second", "eval_model_preparation_time"}


def run_mean_loss(history: list[dict[str, Any]]) -> float | None:
    """The mean training loss over every step of the run: each logged loss is the mean over the steps since
    the log before it, so each counts for those steps (restored logs of a resumed run included)."""
    total, steps, previous = 0.0, 0, 0
    for entry in history:
        if "loss" in entry and entry.get("step", 0) > previous:
            total += entry["loss"] * (entry["step"] - previous)
            steps += entry["step"] - previous
            previous = entry["step"]
    return total / steps if steps else None


class MetricsCallback(TrainerCallback):
    """Opening and closing the backends is the pipeline's job: they outlive training, to record
    the evaluation after it."""

    def __init__(self, backends: list):
        self.backends = backends
        self._last = (time.perf_counter(), 0)

    def record(self, logs: dict[str, Any], state) -> dict[str, Any]:
        record: dict[str, Any] = {"step": state.global_step}
        for key, value in logs.items():
            if key not in DROPPED:
                record[RENAMES.get(key, key)] = value
        if "train_loss" in record and (whole := run_mean_loss(state.log_history)) is not None:
            record["train_loss"] = whole  # the Trainer's covers this session only: after --resume, not the run
        if "loss" in logs:
            now, tokens = time.perf_counter(), state.num_input_tokens_seen
            last_time, last_tokens = self._last
            record["tokens_per_s"] = round((tokens - last_tokens) / max(now - last_time, 1e-9), 1)
            self._last = (now, tokens)
        return record

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = (time.perf_counter(), state.num_input_tokens_seen)
        for backend in self.backends:
            backend.start(state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        for backend in self.backends:
            backend.step(state.global_step)
        if state.global_step >= state.max_steps:
            control.should_log = True  # the last step always: a run shorter than logging.every logs its loss too

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = self.record(logs, state)
        if len(record) > 1:  # the end-of-training summary holds only what DROPPED removes
            for backend in self.backends:
                backend.write(record)

    def on_train_end(self, args, state, control, **kwargs):
        for backend in self.backends:
            backend.train_end()
