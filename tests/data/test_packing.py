"""Packing: first-fit-decreasing rows, and packed examples that cannot see each other."""

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from qlorafx.data.collate import COLLATORS, IGNORE_INDEX, block_causal_mask
from qlorafx.data.packing import pack


def _examples(lengths):
    return [{"input_ids": [10 + i] * n, "labels": [10 + i] * n} for i, n in enumerate(lengths)]


def test_first_fit_decreasing_fills_rows_and_keeps_every_token():
    examples = _examples([6, 5, 4, 3, 2, 2, 1])
    rows = pack(examples, max_length=8)
    assert [r.lengths for r in rows] == [(6, 2), (5, 3), (4, 2, 1)]
    assert sorted(t for r in rows for t in r.input_ids) == sorted(t for e in examples for t in e["input_ids"])
    assert all(len(r.input_ids) <= 8 for r in rows)


def test_rows_follow_the_order_of_the_examples():
    """Packed longest first, but each row placed by its earliest example and holding its examples in
    their order: with data.shuffle false the run trains in the order qlorafx drew."""
    examples = _examples([2, 6, 3, 5, 1])
    rows = pack(examples, max_length=8)
    assert [r.lengths for r in rows] == [(2, 6), (3, 5), (1,)]
    assert [r.input_ids[0] for r in rows] == [10, 12, 14]  # the rows' first examples: 0, 2 and 4


def test_many_examples_pack_tightly():
    import random

    rng = random.Random(0)
    examples = _examples([rng.randint(20, 400) for _ in range(2000)])
    rows = pack(examples, max_length=1024)
    used = sum(len(r.input_ids) for r in rows)
    assert used == sum(len(e["input_ids"]) for e in examples)
    assert used / (len(rows) * 1024) > 0.98


def test_block_causal_mask():
    mask = block_causal_mask([[2, 3]], width=6)[0, 0].int().tolist()
    assert mask == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],  # padding sees itself only: no empty attention row
    ]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=100, max_position_embeddings=128)
    return AutoModelForCausalLM.from_config(config).eval()


def _per_example_losses(logits, labels, lengths):
    """Summed next-token loss of each example in a packed row (labels shift inside each example)."""
    losses, start = [], 0
    for n in lengths:
        piece_logits, piece_labels = logits[start:start + n - 1], labels[start + 1:start + n]
        losses.append(torch.nn.functional.cross_entropy(piece_logits, piece_labels, ignore_index=IGNORE_INDEX, reduction="sum"))
        start += n
    return torch.stack(losses)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_each_packed_example_has_the_loss_it_has_alone(model, attn):
    model.config._attn_implementation = attn
    torch.manual_seed(1)
    examples = [{"input_ids": torch.randint(0, 100, (n,)).tolist()} for n in (9, 5, 7)]
    for e in examples:
        e["labels"] = list(e["input_ids"])
    rows = [r.as_features() for r in pack(examples, max_length=24)]
    assert len(rows) == 1 and rows[0]["lengths"] == [9, 5, 7]
    batch = COLLATORS.get("packed")(0, attn)(rows + [{"input_ids": [1, 2], "labels": [1, 2], "lengths": [2]}])
    batch.pop("num_tokens")
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        packed_losses = _per_example_losses(packed, batch["labels"][0], rows[0]["lengths"])
        alone = []
        for n in rows[0]["lengths"]:
            e = next(x for x in examples if len(x["input_ids"]) == n)
            logits = model(input_ids=torch.tensor([e["input_ids"]])).logits[0]
            alone.append(_per_example_losses(logits, torch.tensor(e["labels"]), [n])[0])
    assert torch.allclose(packed_losses, torch.stack(alone), atol=1e-4), (packed_losses, alone)
    assert not torch.isnan(packed).any()


def test_position_ids_alone_do_not_isolate_examples_with_sdpa(model):
    """The measured fact the packed collator is built on: without the 4D mask, examples leak."""
    model.config._attn_implementation = "sdpa"
    first, second = list(range(1, 9)), list(range(50, 56))
    with torch.no_grad():
        leaky = model(input_ids=torch.tensor([first + second]),
                      position_ids=torch.tensor([list(range(8)) + list(range(6))])).logits[0, 8:]
        alone = model(input_ids=torch.tensor([second])).logits[0]
    assert (leaky - alone).abs().max() > 1e-3


def test_no_example_in_a_row_is_a_target_of_the_one_before():
    """The first token of each packed example carries no label (nothing of its own precedes it);
    every other label is kept as it was."""
    examples = [{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [4, 5], "labels": [4, -100]},
                {"input_ids": [6], "labels": [6]}]
    [row] = pack(examples, max_length=8)
    assert row.input_ids == [1, 2, 3, 4, 5, 6]
    assert row.labels == [IGNORE_INDEX, 2, 3, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
