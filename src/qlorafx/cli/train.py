"""qlorafx train RECIPE [overrides] [--overwrite | --resume [CHECKPOINT] [--force]] [--nproc N]."""

from __future__ import annotations

import sys

from qlorafx import processes
from qlorafx.cli.common import add_recipe_arguments, add_run_dir_arguments, count, load
from qlorafx.interrupts import stop_if_interrupted


def add_parser(commands) -> None:
    parser = commands.add_parser("train", help="finetune as the recipe says; writes the run directory")
    add_recipe_arguments(parser)
    add_run_dir_arguments(parser)
    parser.add_argument("--nproc", type=count(1), default=1, metavar="N",
                        help="data-parallel training in N processes (torchrun; gloo on CPU, nccl on GPUs)")
    parser.set_defaults(run=run)


def _relaunch(args) -> int:
    """Run this same command under torchrun, N processes; each trains, rank 0 writes the run."""
    import subprocess

    argv = [a for a in sys.argv[1:] if a != f"--nproc={args.nproc}"]
    if "--nproc" in argv:
        i = argv.index("--nproc")
        del argv[i:i + 2]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               "-m", "qlorafx.cli.main", *argv]
    return subprocess.call(command)


def run(args) -> int:
    loaded = load(args)  # all recipe problems are reported before torch is even imported
    if args.nproc > 1 and not processes.launched():
        from pathlib import Path

        from qlorafx.train import checkpoints, run_dir

        # the refusals a single process would give, once, before any process starts
        out = Path(loaded.recipe.output_dir)
        try:
            if args.resume:
                checkpoints.resume_point(out, args.resume if isinstance(args.resume, str) else None, args.force,
                                         loaded.to_yaml())
            else:
                run_dir.prepare(out, args.overwrite, dry_run=True)
        except checkpoints.AlreadyFinished as done:
            print(f"{done}", file=sys.stderr)
            return 0
        return _relaunch(args)
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
