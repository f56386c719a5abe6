"""What the prepared data looks like: counts, lengths, trained share, padding; never silent.

Used by the training log and by `qlorafx preprocess` (as text or as one JSON object).
"""

from __future__ import annotations

import random
from typing import Any

from qlorafx.data.build import DatasetReport, Prepared
from qlorafx.data.collate import IGNORE_INDEX
from qlorafx.data.tokenize import Example

PERCENTILES = (50, 90, 99, 100)


def percentiles(lengths: list[int]) -> dict[str, int]:
    ordered = sorted(lengths)
    if not ordered:
        return {f"p{p}": 0 for p in PERCENTILES}
    return {f"p{p}": ordered[min(len(ordered) - 1, max(0, -(-p * len(ordered) // 100) - 1))] for p in PERCENTILES}


def _token_counts(examples: list[Example]) -> dict[str, Any]:
    tokens = sum(e.length for e in examples)
    trained = sum(e.trained_tokens for e in examples)
    return {
        "tokens": tokens,
        "trained_tokens": trained,
        "trained_token_fraction": round(trained / tokens, 4) if tokens else 0.0,
        "no_trained_token": sum(e.trained_tokens == 0 for e in examples),
        "length": percentiles([e.length for e in examples]),
    }


def padding_fraction(lengths: list[int], batch_size: int, group_by_length: bool, seed: int,
                     target_lengths: list[int] | None = None) -> float:
    """Share of the batches' tokens that are padding, in the order training will draw them.
    ``target_lengths``: an encoder-decoder's decoder targets, padded apart from its inputs."""
    if not lengths:
        return 0.0
    if group_by_length:
        import torch
        from transformers.trainer_pt_utils import LengthGroupedSampler

        generator = torch.Generator().manual_seed(seed)
        order = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=generator))
    else:
        order = list(range(len(lengths)))
        random.Random(seed).shuffle(order)
    padded, real = 0, sum(lengths) + sum(target_lengths or [])
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        for side in (lengths, target_lengths or []):
            padded += max(side[i] for i in batch) * len(batch) if side else 0
    return round(1 - real / padded, 4)


# what each batching is called in a sentence ("packing, padding 3%" read as two batchings)
BATCHING_WORDS = {"packing": "packed rows", "padding": "padded batches", "group_by_length": "batches grouped by length"}


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def dataset_summary(report: DatasetReport) -> dict[str, Any]:
    """``examples`` counts what the records gave; ``used`` those max_examples kept, which the truncated
    count and the token counts are over (records, conversations and dropped are before it)."""
    used = report.examples if report.used is None else report.used
    return {
        "path": report.path, "format": report.format, "records": report.records,
        "conversations": report.conversations, "examples": len(report.examples), "used": len(used),
        "filtered": report.filtered, "truncated": sum(e.truncated for e in used), "dropped": report.dropped,
        "cache": report.cache, **_token_counts(used),
    }


def summary(prepared: Prepared, recipe) -> dict[str, Any]:
    d = recipe.data
    every = prepared.train_examples + prepared.val_examples
    rows = [len(f["input_ids"]) for f in prepared.train]
    encoder_decoder = any(e.encoder_decoder for e in prepared.train_examples)
    targets = [len(f["labels"]) for f in prepared.train] if encoder_decoder else None
    return {
        "examples": len(prepared.train_examples),
        "val_examples": len(prepared.val_examples),
        "truncated": sum(e.truncated for e in every),  # of the examples trained and validated on, as the others
        "dropped": sum(r.dropped for r in prepared.datasets),
        "filtered": sum(sum(r.filtered.values()) for r in prepared.datasets),
        **_token_counts(every),
        "batching": "packing" if d.packing else ("group_by_length" if d.group_by_length else "padding"),
        "rows": len(rows) if d.packing else None,
        "padding_fraction": padding_fraction(rows, recipe.training.micro_batch_size, d.group_by_length,
                                             recipe.training.seed, targets),
        "datasets": [dataset_summary(r) for r in prepared.datasets],
    }


def one_line(s: dict[str, Any], max_length: int) -> str:
    return (f"data: {s['examples']} train / {plural(s['val_examples'], 'val example')}, {s['tokens']} tokens, "
            f"{s['trained_token_fraction']:.0%} trained on; longer than {max_length}: {s['truncated']} truncated, "
            f"{s['dropped']} dropped; filtered: {s['filtered']}; with no trained token: {s['no_trained_token']}; "
            f"{BATCHING_WORDS[s['batching']]}, padding {s['padding_fraction']:.1%}")


def marked(example: Example, tokenizer, color: bool) -> str:
    """The example's text with trained tokens told apart: green on a terminal, [[...]] elsewhere.
    An encoder-decoder example shows its encoder input, then its target."""
    if example.encoder_decoder:
        target = tokenizer.decode(example.labels, skip_special_tokens=False)
        return (tokenizer.decode(example.input_ids, skip_special_tokens=False) + "\n=> decoder target: "
                + (f"\033[1;32m{target}\033[0m" if color else f"[[{target}]]"))
    out, run, trained = [], [], None
    for token, label in zip(example.input_ids, example.labels):
        is_trained = label != IGNORE_INDEX
        if trained is not None and is_trained != trained:
            out.append((trained, run))
            run = []
        run.append(token)
        trained = is_trained
    if run:
        out.append((trained, run))
    pieces = []
    for is_trained, tokens in out:
        text = tokenizer.decode(tokens, skip_special_tokens=False)
        if is_trained:
            text = f"\033[1;32m{text}\033[0m" if color else f"[[{text}]]"
        pieces.append(text)
    return "".join(pieces)
