"""qlorafx merge RUN_DIR --out DIR [--dtype ...]: the adapter merged into its unquantized base, checked."""

from __future__ import annotations

import sys
from pathlib import Path

from qlorafx.run_files import ADAPTER_DIR


def add_parser(commands) -> None:
    from qlorafx.infer.merge import DTYPES

    parser = commands.add_parser(
        "merge", help="merge a run's adapter into its base (unquantized), save it, and check its logits",
        description="Reload the base unquantized, merge the adapter, save safetensors with the tokenizer, then "
                    "check the saved model's logits against base + adapter on sample prompts.")
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the output_dir of a finished run")
    parser.add_argument("--out", required=True, type=Path, help="a new (or empty) folder for the merged model")
    parser.add_argument("--dtype", choices=DTYPES, help="dtype of the merged weights (default: the base's own)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from qlorafx.infer import merge

    plan = merge.plan(args.run_dir, args.out, args.dtype)  # refusals come before torch is imported
    from qlorafx.train.quiet import quiet_libraries

    quiet_libraries()
    print(f"merging {Path(plan.run_dir) / ADAPTER_DIR} into {plan.base} ({plan.dtype})")
    try:
        report = merge.run(plan)
    except merge.MergeCheckError as err:
        print(f"error: merge check failed: {err}", file=sys.stderr)
        return 1
    print(f"check: largest logit difference, merged vs base + adapter: {report.largest_difference:.3g} "
          f"(allowed {report.tolerance:.3g}); the adapter itself moves logits by up to {report.adapter_effect:.3g}")
    if report.adapter_effect <= report.tolerance:
        print("note: the adapter barely changes this model's logits, so this check could not tell the merge from "
              "the base alone")
    print(f"merged model: {report.out} ({report.loads_with}.from_pretrained loads it)")
    return 0
