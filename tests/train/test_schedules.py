"""Each schedule, with warm-up given in steps or as a ratio: the lr logged in metrics.jsonl at every
step follows the schedule's curve exactly (linear warm-up from 0, then cosine or linear decay to 0
at the last step, or flat)."""

from __future__ import annotations

import json
import math

import pytest

from qlorafx.recipe.load import load_recipe
from qlorafx.finetune import train
from tests.train.tiny import tiny_recipe

PEAK, STEPS, WARMUP = 1e-2, 10, 3


def expected_lr(schedule: str, step: int) -> float:
    """The lr the optimizer used in step ``step`` (1-based): the schedule at ``step - 1`` steps done."""
    done = step - 1
    if done < WARMUP:
        return PEAK * done / WARMUP
    progress = (done - WARMUP) / (STEPS - WARMUP)
    return {"constant": PEAK, "linear": PEAK * (1 - progress),
            "cosine": PEAK * 0.5 * (1 + math.cos(math.pi * progress))}[schedule]


@pytest.mark.parametrize("warmup", [f"scheduler.warmup_steps={WARMUP}", f"scheduler.warmup_ratio={WARMUP / STEPS}"],
                         ids=["steps", "ratio"])
@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_logged_lr_follows_the_schedule(tmp_path, schedule, warmup):
    loaded = load_recipe(tiny_recipe(tmp_path), [
        f"scheduler.name={schedule}", warmup, f"optimizer.lr={PEAK}", f"training.max_steps={STEPS}",
        "logging.every=1", "logging.backends=[jsonl]", "logging.sample_max_new_tokens=0", "data.val_size=0",
        "training.micro_batch_size=1"])
    train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    logged = {r["step"]: r["lr"] for r in map(json.loads, open(tmp_path / "run" / "metrics.jsonl")) if "lr" in r}
    assert sorted(logged) == list(range(1, STEPS + 1))
    for step, lr in logged.items():
        assert lr == pytest.approx(expected_lr(schedule, step), abs=1e-9), (step, lr)
    # the shape, spelled out: rising through warm-up to the peak, then falling or flat
    curve = [logged[s] for s in range(1, STEPS + 1)]
    assert curve[:WARMUP + 1] == sorted(curve[:WARMUP + 1]) and curve[WARMUP] == pytest.approx(PEAK)
    after = curve[WARMUP:]
    if schedule == "constant":
        assert all(x == pytest.approx(PEAK) for x in after)
    else:
        assert all(a > b for a, b in zip(after, after[1:])) and after[-1] < 0.2 * PEAK
