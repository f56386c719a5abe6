"""A finished run directory written by hand (no training): known numbers for the report to show."""

from __future__ import annotations

import json
from pathlib import Path

from qlorafx.recipe.load import load_recipe
from tests.train.tiny import tiny_recipe

STATUS = {
    "status": "finished", "steps": 40, "eval_loss_before": 2.5, "eval_loss_after": 1.25, "train_loss_last": 1.1,
    "wall_seconds": 12.3, "trainable_params": 34_816, "total_params": 150_208,
    "sample_prompt": "### Instruction:\nSay hi.\n\n### Response:\n", "sample_output": "Hi.",
    "data": {"examples": 120, "val_examples": 8, "tokens": 26_288, "trained_tokens": 2_296,
             "trained_token_fraction": 0.0873, "truncated": 3, "dropped": 0, "filtered": 1, "no_trained_token": 0,
             "length": {"p50": 189, "p100": 266}, "batching": "packing", "padding_fraction": 0.1529,
             "datasets": [{"path": "x", "format": "alpaca", "records": 129, "examples": 128, "tokens": 26_288}]},
}


def metrics(steps: int = 40, every: int = 4) -> list[dict]:
    records = [{"step": 0, "eval_loss": 2.5}]
    for step in range(every, steps + 1, every):
        records.append({"step": step, "loss": 3.0 - step / steps * 1.9, "lr": 1e-3 * min(1.0, step / 8),
                        "grad_norm": 0.5, "tokens_per_s": 1000.0})
    return [*records, {"step": steps, "eval_loss": 1.25}]


def finished_run(tmp_path: Path, overrides: list[str] = (), records: list[dict] | None = None,
                 status: dict | None = None) -> Path:
    loaded = load_recipe(tiny_recipe(tmp_path), list(overrides))
    run = Path(loaded.recipe.output_dir)
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(loaded.to_yaml())
    (run / "versions.json").write_text(json.dumps({"python": "3.11.7", "torch": "2.13.0", "compute_dtype": "float32"}))
    if records is not None:
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "run.json").write_text(json.dumps(status or STATUS))
    return run
