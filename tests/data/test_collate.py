"""Collators: padding never carries loss or attention; an encoder-decoder batch pads each side apart."""

from __future__ import annotations

from qlorafx.data.collate import COLLATORS, IGNORE_INDEX, NUM_TOKENS, collator_for
from tests.data.helpers import recipe


def test_pad_to_longest_pads_right_with_no_loss_and_no_attention():
    batch = COLLATORS.get("pad_to_longest")(0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                                                {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch[NUM_TOKENS] == 4


def test_encoder_decoder_pads_inputs_and_targets_to_their_own_longest():
    batch = COLLATORS.get("encoder_decoder")(0)([{"input_ids": [5, 6, 7, 8], "labels": [9]},
                                                 {"input_ids": [5], "labels": [9, 10, 11]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[9, IGNORE_INDEX, IGNORE_INDEX], [9, 10, 11]]
    assert batch[NUM_TOKENS] == 4 + 1 + 1 + 3  # encoder and decoder tokens alike


def test_the_collator_follows_the_model_and_the_recipe(tmp_path):
    path = str(tmp_path / "d.jsonl")
    assert collator_for(recipe([{"path": path}], packing=True), encoder_decoder=False) == "packed"
    assert collator_for(recipe([{"path": path}], packing=False), encoder_decoder=False) == "pad_to_longest"
    assert collator_for(recipe([{"path": path}], packing=False), encoder_decoder=True) == "encoder_decoder"
