"""LongForm: {input, output}, the input then the output with nothing between, as qlora.py trains it."""

from collections import Counter

import pytest

from qlorafx.data.build import DataError, conversations_of
from qlorafx.data.formats import FORMATS, Turn
from qlorafx.data.formats.longform import LongformDataset
from tests.data.helpers import encode, runs

FMT = FORMATS.get("longform")
DOCSTRING = {"input": "Write a haiku about quantization.\n", "output": "Four bits hold the weight"}


def test_the_docstring_record():
    assert FMT.conversations(DOCSTRING) == [
        [Turn("user", "Write a haiku about quantization.\n"), Turn("assistant", "Four bits hold the weight")]]


def test_rendered_text_and_mask_token_by_token(byte_tokenizer):
    [example] = encode("longform", DOCSTRING, byte_tokenizer)
    assert runs(example, byte_tokenizer) == [(False, "<s>Write a haiku about quantization.\n"),
                                             (True, "Four bits hold the weight</s>")]


@pytest.mark.parametrize("record, message", [
    ({"input": "a"}, "format 'longform' needs field 'output'; the record has input"),
    ({"instruction": "a", "output": "b"}, "format 'longform' needs field 'input'; the record has instruction, output"),
    ({"input": ["a"], "output": "b"}, "format 'longform' needs field 'input' to be text, found list"),
])
def test_malformed_records_name_the_field(record, message):
    with pytest.raises(DataError) as info:
        conversations_of([DOCSTRING, record], LongformDataset(path="l.jsonl"), Counter())
    assert str(info.value) == f"l.jsonl: record 1: {message}"
