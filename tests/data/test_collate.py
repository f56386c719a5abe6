"""Collators: padding never carries loss or attention; an encoder-decoder batch pads each side apart."""

from __future__ import annotations

from qlorafx.data.collate import COLLATORS, IGNORE_INDEX, NUM_TOKENS, ROW_TOKENS, collator_for
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


ROWS = [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, -100, 9], "lengths": [3, 2]},
        {"input_ids": [1, 2, 3, 4], "labels": [-100, 2, 3, 4], "lengths": [4]}]


def test_packed_rows_under_sdpa_and_eager_get_a_block_causal_mask_per_row():
    sdpa = COLLATORS.get("packed")(0, "sdpa")(ROWS)
    eager = COLLATORS.get("packed")(0, "eager")(ROWS)
    for batch in (sdpa, eager):
        assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [1, 2, 3, 4, 0]]
        assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9], [-100, 2, 3, 4, IGNORE_INDEX]]
        assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
        assert batch[NUM_TOKENS] == 9 and "cu_seq_lens_q" not in batch
    assert sdpa["attention_mask"].shape == (2, 1, 5, 5) and sdpa["attention_mask"].dtype.is_floating_point is False
    assert sdpa["attention_mask"][0, 0, 3].tolist() == [False, False, False, True, False]  # 2nd example sees itself
    allowed = eager["attention_mask"] == 0  # eager: 0 where attention goes, the float minimum elsewhere
    assert eager["attention_mask"].dtype.is_floating_point and (allowed == sdpa["attention_mask"]).all()


def test_packed_rows_under_flash_attention_2_become_one_padding_free_row():
    """flash_attention_2 reads restarting position_ids as boundaries only in a batch of one row
    (transformers' _is_packed_sequence): the micro-batch is flattened into one, the boundaries
    given outright as the kernel's cumulative lengths, and transformers derives the same ones."""
    import torch
    from transformers.modeling_flash_attention_utils import _is_packed_sequence, prepare_fa_kwargs_from_position_ids

    batch = COLLATORS.get("packed")(0, "flash_attention_2")(ROWS)
    assert "attention_mask" not in batch  # no padding: nothing to mask
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 1, 2, 3, 4]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9, -100, 2, 3, 4]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert batch["cu_seq_lens_q"].tolist() == batch["cu_seq_lens_k"].tolist() == [0, 3, 5, 9]
    assert batch["cu_seq_lens_q"].dtype == torch.int32
    assert batch["max_length_q"] == batch["max_length_k"] == 4 and batch[NUM_TOKENS] == 9
    assert batch[ROW_TOKENS] == [5, 4]  # the dataset rows in the one row: the evaluation counts per row
    assert _is_packed_sequence(batch["position_ids"], batch_size=1)
    (derived, _), (longest, _) = prepare_fa_kwargs_from_position_ids(batch["position_ids"])
    assert derived.tolist() == [0, 3, 5, 9] and int(longest) == 4
    # what the old collator handed flash attention, several rows with restarting positions, is
    # exactly what transformers does NOT read as boundaries
    rows = COLLATORS.get("packed")(0, "sdpa")(ROWS)["position_ids"]
    assert not _is_packed_sequence(rows, batch_size=2)
