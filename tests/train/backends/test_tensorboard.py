"""The tensorboard backend: its event files, read back with TensorBoard's own reader."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


@pytest.fixture(scope="module")
def events(tracked):
    _, run_dir, _, _ = tracked
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_scalars_match_metrics_jsonl(tracked, events):
    *_, records = tracked
    train_logs = [r for r in records if "loss" in r]
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in train_logs] == [4, 8, 12, 16, 20, 24]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in train_logs], rel=1e-6)
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([2e-2] * 6)
    evals = [r for r in records if "eval_loss" in r]
    assert [(e.step, e.value) for e in events.Scalars("eval/loss")] == [
        (r["step"], pytest.approx(r["eval_loss"], rel=1e-6)) for r in evals]


def test_the_resolved_recipe_is_a_text_entry(tracked, events):
    loaded, *_ = tracked
    [entry] = events.Tensors("recipe/text_summary")
    text = entry.tensor_proto.string_val[0].decode()
    assert [line.removeprefix("    ") for line in text.splitlines()] == loaded.to_yaml().splitlines()
