"""The ``qlorafx`` command. Light on purpose: torch is imported only by commands that load weights."""

from __future__ import annotations

import argparse
import os
import sys

from qlorafx import __version__
from qlorafx.cli import (chat, env, estimate, evaluate, generate, judge, merge, preprocess, recipes, report, schema,
                         serve, show, train, validate)
from qlorafx.errors import UserError
from qlorafx.interrupts import ctrl_c_always_stops

COMMANDS = (train, validate, show, evaluate, preprocess, estimate, generate, chat, serve, merge, judge, recipes, report,
            schema, env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qlorafx",
        description="Declarative QLoRA finetuning: one validated YAML recipe, one command.",
        epilog="Overrides are key.path=value, e.g. lora.r=32 data.datasets.0.path=train.jsonl",
    )
    parser.add_argument("--version", action="version", version=f"qlorafx {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Overrides may come before or after options (train r.yaml --overwrite lora.r=8)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    _run_dir_flags(commands.choices[args.command], args)
    return args


def _run_dir_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--resume takes an optional CHECKPOINT, so `--resume training.max_steps=1` would read the override
    as one: an override (key=value that is no existing path) is an override wherever it stands."""
    if not hasattr(args, "resume"):
        return
    if isinstance(args.resume, str) and "=" in args.resume and not os.path.exists(args.resume):
        args.overrides, args.resume = [*args.overrides, args.resume], True
    if args.overwrite and args.resume:
        parser.error("--overwrite starts over and --resume continues: choose one")
    if args.force and not args.resume:
        parser.error("--force only applies with --resume (it accepts recipe changes since the checkpoint); "
                     "add --resume, or drop --force")


def _without_torch() -> None:
    """This process runs a command that never needs torch (validate): transformers' config classes are
    imported in its torch-free mode, as if torch were not installed, so the command stays fast."""
    if "torch" not in sys.modules:
        sys.modules["torch"] = None  # Python's own way to make `import torch` fail, and find_spec say absent
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # its "PyTorch was not found" notice


def main(argv: list[str] | None = None) -> int:
    """``argv`` None: this is the program (`qlorafx ...`, `python -m qlorafx.cli.main`); given: a call in a
    process that may need torch later (tests), which is left as it is."""
    args = parse(argv)
    if argv is None and getattr(args, "torch_free", False):
        _without_torch()
    try:
        with ctrl_c_always_stops():  # a Ctrl-C during the heavy imports must not be lost
            return args.run(args) or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped reading (`qlorafx validate r.yaml | head -1`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit would fail again
        return 128 + 13  # what a shell reports for a program SIGPIPE ended


if __name__ == "__main__":
    sys.exit(main())
