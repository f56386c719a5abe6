"""qlorafx judge COMPARISON.yaml [key=value ...] [--dry-run]: finetunes compared by a judge model.

Contestants and judge are OpenAI-compatible endpoints (`qlorafx serve` for qlorafx runs, or any
hosted model). Answers and judgments are cached as they arrive: an interrupted or extended
comparison, rerun, asks only for what it lacks. Imports no torch (docs/judge.md).
"""

from __future__ import annotations

import sys


def add_parser(commands) -> None:
    parser = commands.add_parser("judge", help="compare finetunes pairwise with a judge model: Elo, win rates, relative scores")
    parser.add_argument("comparison", metavar="COMPARISON", help="the comparison YAML (endpoints, contestants, judge)")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="override values of the comparison")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything that needs no request and say how many answers and judgments are cached")
    parser.set_defaults(run=run)


def run(args) -> int:
    from importlib.util import find_spec

    from qlorafx.errors import UserError

    if find_spec("openai") is None:
        raise UserError("qlorafx judge needs the OpenAI client: pip install 'qlorafx[judge]'")
    from qlorafx.judge.comparison import REPORT, Interrupted, plan, prepare, run_comparison, summary

    prepared = prepare(args.comparison, args.overrides, dry_run=args.dry_run)
    try:
        if args.dry_run:
            print(plan(prepared))
            return 0
        try:
            results = run_comparison(prepared)  # SIGINT and SIGTERM stop its requests in order
        except Interrupted as stopped:
            print(f"stopped ({stopped}): the answers and judgments received so far are cached; rerun the same command "
                  f"to resume", file=sys.stderr)
            return 130
    finally:
        prepared.cache.close()
    print(summary(results))
    print(f"wrote {prepared.output_dir / REPORT}")
    return 0
