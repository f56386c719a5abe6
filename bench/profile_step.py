"""Where one training step's time goes, on the bench's reference set-up (bench/common.py).

    .venv/bin/python bench/profile_step.py [--padded] [--steps N] [--full-head | --unfused]

Runs qlorafx's own pipeline (`train()`, packed unless --padded) and profiles N optimizer steps after
two warm-up steps with torch.profiler. Prints the time by kind (4-bit dequantization, matrix products,
the loss's softmax, attention, the optimizer, fetching and collating batches, ...) and the top
operators. --full-head profiles the output head over every position (the computation before issue 15);
--unfused the head at labelled positions with the model's own loss after it (the head's product not fused
with the loss).
The summary of a run is kept in bench/PROFILE.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from full_head import use_head  # noqa: E402
from setups import qlorafx_recipe  # noqa: E402

WARM_UP = 2
# (kind, what an operator's name contains): the first match wins; self time, so nothing counts twice
KINDS = [
    ("4-bit dequantization", ("bitsandbytes::", "dequantize")),
    ("matrix products (linear, LoRA, head)", ("aten::mm", "aten::addmm", "aten::bmm")),
    ("loss: log-softmax and NLL over the vocabulary", ("log_softmax", "nll_loss")),
    ("attention kernel", ("scaled_dot_product", "_flash_attention", "_efficient_attention")),
    ("optimizer (AdamW foreach ops)", ("_foreach",)),
    ("copies, casts, gathers", ("aten::copy_", "aten::to", "aten::_to_copy", "aten::index", "aten::clone",
                                "aten::contiguous", "aten::cat", "aten::fill_", "aten::zero_", "aten::masked_fill")),
    ("elementwise (norms, activations, adds)", ("aten::",)),
]
# record_function ranges the Trainer and torch emit; their TOTAL time (they contain the ops above)
RANGES = [("fetch + collate batches (DataLoader __next__)", "enumerate(DataLoader)"),
          ("optimizer.step", "Optimizer.step"), ("optimizer.zero_grad", "Optimizer.zero_grad")]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--padded", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    paths = parser.add_mutually_exclusive_group()
    paths.add_argument("--full-head", action="store_true", help="the head over every position (before issue 15)")
    paths.add_argument("--unfused", action="store_true", help="the head at labelled positions, not fused with the loss")
    parser.add_argument("--shapes", action="store_true", help="also list the top operators by input shape")
    args = parser.parse_args()
    common.threads()

    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    from qlorafx.recipe.load import load_recipe
    train = common.finetune_module().train

    head = "full" if args.full_head else "unfused" if args.unfused else "labelled"
    use_head(head)

    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes)

    class Profile(TrainerCallback):
        def on_step_end(self, a, state, control, **kwargs):
            if state.global_step == WARM_UP:
                prof.start()
            elif state.global_step == WARM_UP + args.steps:
                prof.stop()
                control.should_training_stop = True

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = common.prepare_base(tmp)
        loaded = load_recipe(qlorafx_recipe(tmp, base, packing=not args.padded),
                             [f"data.cache_dir={tmp / 'cache'}", "training.epochs=null",
                              f"training.max_steps={WARM_UP + args.steps + 1}"])
        train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None, callbacks=(Profile(),))

    events = prof.key_averages()
    step_us = sum(e.self_cpu_time_total for e in events) / args.steps
    by_kind: dict[str, float] = defaultdict(float)
    for e in events:
        kind = next((k for k, needles in KINDS if any(n in e.key for n in needles)), "other (python, autograd glue)")
        by_kind[kind] += e.self_cpu_time_total / args.steps
    mode = "padded" if args.padded else "packed"
    described = {"full": "over every position", "unfused": "at labelled positions only, then the model's loss",
                 "labelled": "at labelled positions only, fused with the loss"}[head]
    print(f"## {mode}, head {described}: "
          f"{step_us / 1e6:.3f} s of CPU time per step (self time summed over {args.steps} steps, "
          f"{torch.get_num_threads()} threads)\n")
    print("| kind | s / step | share |\n|---|---:|---:|")
    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {us / 1e6:.3f} | {us / step_us:.1%} |")
    print("\n| range (total time, contains ops above) | s / step | share |\n|---|---:|---:|")
    for label, needle in RANGES:
        us = sum(e.cpu_time_total for e in events if e.key.startswith(needle)) / args.steps
        print(f"| {label} | {us / 1e6:.3f} | {us / step_us:.1%} |")
    print("\nTop operators by self time:\n")
    print(events.table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=60))
    if args.shapes:
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=30,
                                                                 max_name_column_width=40, max_shapes_column_width=70))
    return 0


if __name__ == "__main__":
    sys.exit(main())
