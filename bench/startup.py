"""Where the time from the command to the first optimizer step goes, stage by stage.

    START=$(date +%s.%N) .venv/bin/python bench/startup.py RECIPE [overrides...]

Runs `qlorafx train RECIPE overrides --overwrite` in this process exactly as the command does
(qlorafx.cli.main.main) and prints, when the first optimizer step begins, a timestamp for each
stage: interpreter start (from $START, taken by the shell just before), the CLI's imports, the
recipe, the heavy imports, tokenizer, data, model, LoRA, trainer, the evaluation before training,
the first step. Then it stops the run (exit code 0); nothing is measured past the first step.
Add training.max_steps=1 and a fresh output_dir as you like; the stages are read by wrapping the
pipeline's own functions (nothing is changed in what they do).
"""

from __future__ import annotations

import time

T0, CPU0 = time.time(), time.process_time()
import os  # noqa: E402
import sys  # noqa: E402

marks: list[tuple[str, float, float]] = []  # (stage, wall clock, this process's CPU time)


def mark(label: str) -> None:
    marks.append((label, time.time(), time.process_time()))


def report() -> None:
    """Wall seconds, and CPU seconds of this process (all threads): on a shared machine the CPU
    time is the steadier of the two."""
    start = float(os.environ.get("START", T0))
    print(f"{'stage':<58} {'ends at s':>9} {'wall s':>7} {'CPU s':>6}")
    previous, previous_cpu = start, 0.0
    for label, at, cpu in [("interpreter + site start-up", T0, CPU0), *marks]:
        print(f"{label:<58} {at - start:9.2f} {at - previous:7.2f} {cpu - previous_cpu:6.2f}")
        previous, previous_cpu = at, cpu


def timed(owner, name: str, label: str):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        mark(f"  (before {label})")
        try:
            return original(*args, **kwargs)
        finally:
            mark(label)

    setattr(owner, name, wrapper)


class FirstStep(Exception):
    pass


def main() -> int:
    from qlorafx.cli import main as cli

    mark("import qlorafx.cli (argparse, recipe schema)")
    import qlorafx.finetune as pipeline  # what `train` imports after the recipe is loaded

    mark("import torch, transformers, peft, bitsandbytes (pipeline)")
    from transformers import Trainer

    from qlorafx.model.loaders import MODEL_LOADERS

    for key in ("pretrained", "from_config"):
        loader = MODEL_LOADERS.get(key)
        timed(loader, "tokenizer", "tokenizer")
        timed(loader, "model", "quantized model")
    timed(pipeline, "prepare_data", "data (cache or tokenize; pack)")
    timed(pipeline, "check_lora", "LoRA options checked on the skeleton")
    timed(pipeline, "add_lora", "LoRA wrapped")
    timed(pipeline, "initialize_from_data", "trainer built")
    timed(Trainer, "evaluate", "evaluation before training")
    original_step = Trainer.training_step

    def first_step(self, *args, **kwargs):
        mark("first optimizer step begins")
        raise FirstStep

    Trainer.training_step = first_step
    try:
        cli.main(["train", *sys.argv[1:], "--overwrite"])
    except FirstStep:
        pass
    finally:
        Trainer.training_step = original_step
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
