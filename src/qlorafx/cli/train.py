"""qlorafx train RECIPE [overrides] [--overwrite | --resume [CHECKPOINT] [--force]] [--nproc N] [machines]."""

from __future__ import annotations

import sys

from qlorafx import processes
from qlorafx.cli import launch
from qlorafx.cli.common import add_recipe_arguments, add_run_dir_arguments, load
from qlorafx.interrupts import stop_if_interrupted


def add_parser(commands) -> None:
    parser = commands.add_parser("train", help="finetune as the recipe says; writes the run directory")
    add_recipe_arguments(parser)
    add_run_dir_arguments(parser)
    launch.add_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    loaded = load(args)  # all recipe problems are reported before torch is even imported
    launch.check(args)
    if launch.wanted(args) and not processes.launched():
        from pathlib import Path

        from qlorafx.train import checkpoints, run_dir

        # the refusals a single process would give, once, before any process starts
        out = Path(loaded.recipe.output_dir)
        try:
            if args.resume and launch.hosts_the_run(args):
                checkpoints.resume_point(out, args.resume if isinstance(args.resume, str) else None, args.force,
                                         loaded.to_yaml(), launch.world_size(args))
            elif launch.hosts_the_run(args):
                run_dir.prepare(out, args.overwrite, dry_run=True)
        except checkpoints.AlreadyFinished as done:
            print(f"{done}", file=sys.stderr)
            return 0
        return launch.launch(args)
    from qlorafx.train.quiet import quiet_libraries

    quiet_libraries()  # before the heavy imports: some libraries warn while importing
    from qlorafx.train.checkpoints import AlreadyFinished
    from qlorafx.finetune import Interrupted, train

    stop_if_interrupted()  # a Ctrl-C swallowed during those imports stops here, before anything is read or written

    try:
        summary = train(loaded.recipe, loaded.to_yaml(), overwrite=args.overwrite, resume=args.resume,
                        force=args.force).summary
    except AlreadyFinished as done:
        print(f"{done}", file=sys.stderr)
        return 0
    except Interrupted as stopped:
        print(f"stopped: {stopped}", file=sys.stderr)
        return 130
    if not processes.is_main():
        return 0
    print(f"done: {summary.steps} steps in {summary.wall_seconds:.0f}s; run directory {summary.run_dir}")
    if summary.eval_loss_before is not None and summary.eval_loss_after is not None:
        ratio = summary.eval_loss_after / summary.eval_loss_before
        print(f"eval loss {summary.eval_loss_before:.4f} -> {summary.eval_loss_after:.4f} ({ratio:.2f}x)")
    if summary.sample_output is not None:
        # the model's part in bold on a terminal; piped or redirected, the plain text (no escape codes in a log)
        bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
        print(f"sample:\n{summary.sample_prompt}{bold}{summary.sample_output}{plain}")
    return 0
