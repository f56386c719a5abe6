"""Completion: raw text, every token trained (but BOS), whatever train_on_inputs says."""

from collections import Counter

import pytest

from qlorafx.data.build import DataError, conversations_of
from qlorafx.data.formats import FORMATS, Turn
from qlorafx.data.formats.completion import CompletionDataset
from tests.data.helpers import encode, runs

TEXT = "NF4 is an information-theoretically optimal data type for normal weights."


def test_the_whole_text_is_one_assistant_turn():
    assert FORMATS.get("completion").conversations({"text": TEXT}) == [[Turn("assistant", TEXT)]]


def test_another_column():
    options = CompletionDataset(path="x", column="body")
    assert FORMATS.get("completion").conversations({"body": TEXT, "text": "not this"}, options) == [[Turn("assistant", TEXT)]]


@pytest.mark.parametrize("train_on_inputs", [False, True])
def test_every_token_but_bos_is_trained(byte_tokenizer, train_on_inputs):
    [example] = encode("completion", {"text": TEXT}, byte_tokenizer, train_on_inputs=train_on_inputs)
    assert runs(example, byte_tokenizer) == [(False, "<s>"), (True, TEXT + "</s>")]
    assert example.trained_tokens == len(TEXT) + 1 and len(example.input_ids) == len(TEXT) + 2


def test_truncation_keeps_the_start(byte_tokenizer):
    [example] = encode("completion", {"text": TEXT}, byte_tokenizer, max_length=11)
    assert example.truncated and runs(example, byte_tokenizer) == [(False, "<s>"), (True, TEXT[:10])]


def test_a_missing_column_names_it_and_lists_the_records_columns():
    with pytest.raises(DataError) as info:
        conversations_of([{"text": "a"}, {"content": "b", "id": 1}], CompletionDataset(path="t.jsonl"), Counter())
    assert str(info.value) == "t.jsonl: record 1: format 'completion' needs field 'text'; the record has content, id"
