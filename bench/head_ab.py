"""The output head's paths A/B inside ONE training run, step by step, in CPU seconds: robust to a loaded
machine, where separate runs minutes apart differ by more than the difference under test.

    BENCH_THREADS=1 .venv/bin/python bench/head_ab.py [--padded] [--steps 12] [--modes labelled,unfused]

qlorafx's own pipeline (`train()`) on the bench's reference set-up (bench/common.py), packed unless
--padded; every step takes the next mode in turn (bench/full_head.py: full, unfused, labelled), which
changes only the time a step takes, never what it computes (each path is exact, tests/train). The run is
repeated once per mode with the turns shifted, so that every step (the same seeded batches each time)
is timed under every mode: per mode the median and mean of the process's CPU seconds per step after two
warm-up steps, and the median of the per-step ratios against the second mode (the same batch's work). With one thread the
process's CPU time is the work done, whatever else runs (with two, OpenMP's spinning at its barriers
counts as CPU time too, and grows with the load).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from full_head import HEAD_MODES  # noqa: E402
from setups import qlorafx_recipe  # noqa: E402

WARM_UP = 2


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--padded", action="store_true")
    parser.add_argument("--steps", type=int, default=12, help="timed steps, shared out between the modes in turn")
    parser.add_argument("--modes", default="labelled,unfused", help=f"comma-separated, of {', '.join(HEAD_MODES)}")
    args = parser.parse_args()
    modes = args.modes.split(",")
    threads = common.threads()

    from transformers import TrainerCallback

    from qlorafx.recipe.load import load_recipe
    from qlorafx.train import trainers

    build, built = trainers._token_counting_trainer, []

    def trainer_class():  # the class the pipeline builds, kept so that each step can set its mode
        built.append(build())
        return built[-1]

    trainers._token_counting_trainer = trainer_class
    per_step: dict[str, dict[int, float]] = {mode: {} for mode in modes}  # mode -> step -> CPU s

    class Alternate(TrainerCallback):
        shift = 0

        def on_step_begin(self, a, state, control, **kwargs):
            self.mode = modes[(state.global_step + self.shift) % len(modes)]
            built[-1].head_only_where_loss, built[-1].fuse_head_with_loss = HEAD_MODES[self.mode]
            self.started = time.process_time()

        def on_step_end(self, a, state, control, **kwargs):
            if state.global_step > WARM_UP:
                per_step[self.mode][state.global_step] = time.process_time() - self.started

    alternate = Alternate()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = common.prepare_base(tmp)
        for alternate.shift in range(len(modes)):
            run = tmp / f"run{alternate.shift}"
            run.mkdir()
            loaded = load_recipe(qlorafx_recipe(run, base, packing=not args.padded),
                                 [f"data.cache_dir={tmp / 'cache'}", "training.epochs=null",
                                  f"training.max_steps={WARM_UP + args.steps}"])
            common.finetune_module().train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None, callbacks=(alternate,))
    seconds = {mode: list(steps.values()) for mode, steps in per_step.items()}

    print(f"## {'padded' if args.padded else 'packed'}, {threads} thread(s), CPU s per step, "
          f"{args.steps} steps in turn after {WARM_UP} warm-up\n")
    print("| head | steps | median | mean |\n|---|---:|---:|---:|")
    for mode, values in seconds.items():
        print(f"| {mode} | {len(values)} | {statistics.median(values):.3f} | {statistics.mean(values):.3f} |")
    if len(modes) >= 2:
        ratios = [per_step[modes[0]][step] / per_step[modes[1]][step] for step in per_step[modes[0]]]
        print(f"\n{modes[0]} / {modes[1]}, the same step's CPU time: median {statistics.median(ratios):.3f} "
              f"over {len(ratios)} steps (min {min(ratios):.3f}, max {max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
