"""The data report: percentiles, trained share, padding under each batching, and marked examples."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from qlorafx.data import report
from qlorafx.data.build import prepare
from qlorafx.data.collate import IGNORE_INDEX
from qlorafx.data.tokenize import Example
from tests.conftest import SHARED_DATA
from tests.data.helpers import encode, recipe

PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
          "### Instruction:\nName a primary color.\n\n### Response: ")


def test_percentiles_are_nearest_rank():
    assert report.percentiles(list(range(1, 101))) == {"p50": 50, "p90": 90, "p99": 99, "p100": 100}
    assert report.percentiles([7]) == {"p50": 7, "p90": 7, "p99": 7, "p100": 7}
    assert report.percentiles([4, 1, 3, 2]) == {"p50": 2, "p90": 4, "p99": 4, "p100": 4}
    assert report.percentiles([]) == {"p50": 0, "p90": 0, "p99": 0, "p100": 0}
    rng = random.Random(0)
    for n in (3, 10, 99, 1001):
        lengths = [rng.randint(1, 2000) for _ in range(n)]
        expected = {f"p{p}": int(np.percentile(lengths, p, method="inverted_cdf")) for p in (50, 90, 99, 100)}
        assert report.percentiles(lengths) == expected


@pytest.mark.parametrize("lengths, batch_size, expected", [
    ([5, 5, 5, 5], 2, 0.0),
    ([1, 3], 2, round(1 - 4 / 6, 4)),
    ([1, 3], 1, 0.0),  # a batch of one is never padded
    ([2, 4, 6], 3, 0.3333),
    ([], 4, 0.0),
])
def test_padding_fraction(lengths, batch_size, expected):
    assert report.padding_fraction(lengths, batch_size, group_by_length=False, seed=0) == expected


def test_padding_fraction_of_an_encoder_decoder_pads_inputs_and_targets_apart():
    # inputs 4 and 1 pad to 4 + 4, targets 1 and 3 to 3 + 3: 9 real tokens of 14
    assert report.padding_fraction([4, 1], 2, False, 0, target_lengths=[1, 3]) == round(1 - 9 / 14, 4)
    assert report.padding_fraction([4, 1], 1, False, 0, target_lengths=[1, 3]) == 0.0


def test_padding_fraction_follows_the_seeded_order_and_grouping_cuts_it():
    lengths = [1, 10] * 400
    fractions = [report.padding_fraction(lengths, 2, False, seed) for seed in range(3)]
    assert len(set(fractions)) == 3 and min(fractions) > 0.25  # random pairs often mix a 1 with a 10
    assert report.padding_fraction(lengths, 2, False, 1) == fractions[1]  # the seed fixes the order
    # transformers' length-grouped sampler sorts random megabatches of 50 batches: at most one mixed pair in each
    grouped = report.padding_fraction(lengths, 2, True, 0)
    assert 0 < grouped <= round(1 - sum(lengths) / (sum(lengths) + 8 * 9), 4) and grouped < min(fractions) / 10


def test_marked_shows_an_encoder_decoder_examples_input_then_its_target(byte_tokenizer):
    from qlorafx.data.tokenize import Example

    ids = lambda text: byte_tokenizer(text, add_special_tokens=False)["input_ids"]
    example = Example(ids("Name a color."), ids("Red.") + [byte_tokenizer.eos_token_id], encoder_decoder=True)
    assert report.marked(example, byte_tokenizer, color=False) == "Name a color.\n=> decoder target: [[Red.</s>]]"


def test_marked_tells_trained_tokens_apart(byte_tokenizer):
    [example] = encode("alpaca", {"instruction": "Name a primary color.", "output": "Red."}, byte_tokenizer)
    assert report.marked(example, byte_tokenizer, color=False) == f"<s>{PROMPT}[[Red.</s>]]"
    assert report.marked(example, byte_tokenizer, color=True) == f"<s>{PROMPT}\033[1;32mRed.</s>\033[0m"
    turns = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                          {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Ciao"}]}
    from qlorafx.data.formats.chat import ChatDataset

    [example] = encode("chat", turns, byte_tokenizer, ChatDataset(path="x", chat_template="chatml"))
    assert report.marked(example, byte_tokenizer, color=False) == (
        "<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n[[Yo<|im_end|>\n]]"
        "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n[[Ciao<|im_end|>\n]]")
    assert report.marked(Example([1, 2], [IGNORE_INDEX, IGNORE_INDEX]), byte_tokenizer, color=False) == \
           byte_tokenizer.decode([1, 2])  # nothing trained: no marks
    assert report.marked(Example([], []), byte_tokenizer, color=False) == ""


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_summary_counts_on_a_small_dataset(tmp_path, byte_tokenizer):
    outputs = ["Red.", "Blue!", "x" * 300]
    path = _write(tmp_path / "d.jsonl", [{"instruction": "Name a primary color.", "output": o} for o in outputs] +
                  [{"instruction": "Name a primary color.", "output": "y" * 400}])
    r = recipe([{"path": path}], max_length=len(PROMPT) + 100, packing=False, micro_batch_size=2, val_size=1,
               length_policy="drop")
    prepared = prepare(r, byte_tokenizer, log=lambda line: None)
    s = report.summary(prepared, r)
    kept = [1 + len(PROMPT) + len(o) + 1 for o in outputs[:2]] + [1 + len(PROMPT) + 300 + 1]
    assert sorted(len(e.input_ids) for e in prepared.train_examples + prepared.val_examples) == sorted(
        k for k in kept if k <= len(PROMPT) + 100)
    trained = len("Red.") + 1 + len("Blue!") + 1
    tokens = 2 * (1 + len(PROMPT)) + trained
    assert {k: s[k] for k in ("examples", "val_examples", "truncated", "dropped", "filtered", "tokens", "trained_tokens",
                              "trained_token_fraction", "no_trained_token", "batching", "rows")} == {
        "examples": 1, "val_examples": 1, "truncated": 0, "dropped": 2, "filtered": 0, "tokens": tokens,
        "trained_tokens": trained, "trained_token_fraction": round(trained / tokens, 4), "no_trained_token": 0,
        "batching": "padding", "rows": None}
    assert s["padding_fraction"] == 0.0  # one training example: nothing to pad
    assert s["length"] == {"p50": min(kept[:2]), "p90": max(kept[:2]), "p99": max(kept[:2]), "p100": max(kept[:2])}
    [d] = s["datasets"]
    assert {k: d[k] for k in ("path", "format", "records", "conversations", "examples", "filtered", "truncated",
                              "dropped", "tokens", "trained_tokens", "no_trained_token")} == {
        "path": path, "format": "alpaca", "records": 4, "conversations": 4, "examples": 2, "filtered": {},
        "truncated": 0, "dropped": 2, "tokens": tokens, "trained_tokens": trained, "no_trained_token": 0}
    assert report.one_line(s, r.data.max_length) == (
        f"data: 1 train / 1 val example, {tokens} tokens, {trained / tokens:.0%} trained on; longer than "
        f"{r.data.max_length}: 0 truncated, 2 dropped; filtered: 0; with no trained token: 0; padded batches, padding 0.0%")


def test_examples_with_no_trained_token_are_counted(tmp_path, byte_tokenizer):
    path = _write(tmp_path / "d.jsonl", [{"instruction": "Name a primary color.", "output": "Red."},
                                         {"instruction": "Name a primary color." + "!" * 200, "output": "Blue."}])
    r = recipe([{"path": path}], max_length=len(PROMPT) + 10, packing=False)
    s = report.summary(prepare(r, byte_tokenizer, log=lambda line: None), r)
    assert (s["no_trained_token"], s["truncated"], s["datasets"][0]["no_trained_token"]) == (1, 1, 1)
    assert s["trained_tokens"] == len("Red.") + 1


@pytest.fixture(scope="module")
def alpaca_5000(llama2_tokenizer, tmp_path_factory):
    path = SHARED_DATA / "alpaca" / "alpaca_5000.json"
    cache_dir = str(tmp_path_factory.mktemp("cache"))

    def summary(**data):
        r = recipe([{"path": str(path)}], micro_batch_size=8, max_length=1024, cache_dir=cache_dir, **data)
        return report.summary(prepare(r, llama2_tokenizer, log=lambda line: None), r)

    return summary


def test_real_alpaca_with_llama2_packing_padding_and_grouping(alpaca_5000):
    packed = alpaca_5000(packing=True)
    padded = alpaca_5000(packing=False)
    grouped = alpaca_5000(packing=False, group_by_length=True)
    assert [s["batching"] for s in (packed, padded, grouped)] == ["packing", "padding", "group_by_length"]
    # the same examples under every batching (the cache serves the second and third)
    assert [s["datasets"][0]["cache"] for s in (packed, padded, grouped)] == ["miss", "hit", "hit"]
    for s in (packed, padded, grouped):
        assert (s["examples"], s["val_examples"], s["truncated"], s["dropped"], s["no_trained_token"]) == (5000, 0, 0, 0, 0)
        assert s["tokens"] == 639357 and s["length"] == {"p50": 112, "p90": 203, "p99": 357, "p100": 794}
        assert s["trained_token_fraction"] == round(s["trained_tokens"] / s["tokens"], 4) == 0.5202
    assert packed["rows"] >= -(-639357 // 1024) and packed["rows"] == 629
    assert packed["padding_fraction"] < 0.02
    assert padded["padding_fraction"] > 0.40  # the README measured about 45% for random batches of 8
    assert packed["padding_fraction"] < grouped["padding_fraction"] < padded["padding_fraction"] / 5
