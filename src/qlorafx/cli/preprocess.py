"""qlorafx preprocess RECIPE [overrides] [--json] [--show N]: the data as training will see it.

Per dataset and in total: examples, token-length percentiles, truncated and dropped counts,
filter counts, the share of tokens trained on, and the padding share under the recipe's
batching; then N rendered examples with the trained tokens marked. Fails (exit 2) when no
example has a trained token.
"""

from __future__ import annotations

import json
import sys

from qlorafx.cli.common import add_recipe_arguments, count, load


def add_parser(commands) -> None:
    parser = commands.add_parser("preprocess", help="tokenize the recipe's data and report on it (no weights loaded)")
    add_recipe_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--show", type=count(0), default=0, metavar="N", help="print N rendered training examples")
    parser.set_defaults(run=run)


def _text(s: dict, max_length: int) -> str:
    from qlorafx.data.report import BATCHING_WORDS, plural

    lines = []
    for d in s["datasets"]:
        used = f", {d['used']} used (max_examples)" if d["used"] != d["examples"] else ""
        lines.append(f"{d['path']} ({d['format']}, cache {d['cache']}): {plural(d['records'], 'record')} -> "
                     f"{plural(d['conversations'], 'conversation')} -> {plural(d['examples'], 'example')}{used}")
        of = f" of the {d['used']} used" if used else ""
        lines.append(f"  tokens {d['tokens']}, length p50/p90/p99/max {'/'.join(str(v) for v in d['length'].values())}, "
                     f"trained {d['trained_token_fraction']:.1%}, truncated {d['truncated']}{of}, dropped {d['dropped']}, "
                     f"no trained token {d['no_trained_token']}")
        for reason, count in d["filtered"].items():
            lines.append(f"  filtered: {count} {reason}")
    lines.append(f"total: {s['examples']} train / {plural(s['val_examples'], 'val example')}, {s['tokens']} tokens, "
                 f"length p50/p90/p99/max {'/'.join(str(v) for v in s['length'].values())}, "
                 f"trained {s['trained_token_fraction']:.1%}, truncated {s['truncated']} and dropped {s['dropped']} "
                 f"(max_length {max_length}), filtered {s['filtered']}, no trained token {s['no_trained_token']}")
    rows = f": {plural(s['rows'], 'row')}" if s["rows"] is not None else ""
    lines.append(f"batching: {BATCHING_WORDS[s['batching']]}{rows}, padding {s['padding_fraction']:.1%}")
    return "\n".join(lines)


def run(args) -> int:
    recipe = load(args).recipe
    from qlorafx.train.quiet import quiet_libraries

    quiet_libraries()
    from qlorafx.data import report
    from qlorafx.data.build import prepare
    from qlorafx.model.architecture import is_encoder_decoder
    from qlorafx.model.loaders import MODEL_LOADERS

    loader = MODEL_LOADERS.get(recipe.model.loader)
    tokenizer = loader.tokenizer(recipe)
    encoder_decoder = is_encoder_decoder(loader.config(recipe, tokenizer))  # T5: prompt and target apart
    prepared = prepare(recipe, tokenizer, lambda line: print(line, file=sys.stderr), encoder_decoder)
    summary = report.summary(prepared, recipe)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_text(summary, recipe.data.max_length))
        color = sys.stdout.isatty()
        for i, example in enumerate(prepared.train_examples[: args.show]):
            legend = "trained tokens in green" if color else "trained tokens in [[...]]"
            print(f"\n--- example {i} ({example.length} tokens, {example.trained_tokens} trained; {legend}) ---")
            print(report.marked(example, tokenizer, color))
    return 0  # prepare() has already failed if no training example has a trained token
