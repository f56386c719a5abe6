"""The ``qlorafx`` command. Light on purpose: torch is imported only by commands that load weights."""

from __future__ import annotations

import argparse
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
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        with ctrl_c_always_stops():  # a Ctrl-C during the heavy imports must not be lost
            return args.run(args) or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
