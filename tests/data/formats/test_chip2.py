"""OIG unified_chip2: every <human>/<bot> turn kept, in the dataset's own form."""

from collections import Counter

import pytest

from qlorafx.data.build import DataError, conversations_of
from qlorafx.data.formats import FORMATS, Turn
from qlorafx.data.formats.chip2 import Chip2Dataset
from tests.data.helpers import encode, runs

FMT = FORMATS.get("chip2")
DOCSTRING = {"text": "<human>: What is NF4?\n<bot>: A 4-bit data type.\n<human>: Why?\n<bot>: It fits normal weights."}
TURNS = [Turn("user", "<human>: What is NF4?\n<bot>: "), Turn("assistant", "A 4-bit data type."),
         Turn("user", "<human>: Why?\n<bot>: "), Turn("assistant", "It fits normal weights.")]


def test_the_docstring_record_keeps_every_turn():
    assert FMT.conversations(DOCSTRING) == [TURNS]


def test_a_single_exchange_and_another_column():
    record = {"dialogue": "<human>: Hi there\n<bot>: Hello! How can I help?\n"}
    assert FMT.conversations(record, Chip2Dataset(path="x", column="dialogue")) == [
        [Turn("user", "<human>: Hi there\n<bot>: "), Turn("assistant", "Hello! How can I help?")]]


def test_rendered_text_and_mask_token_by_token(byte_tokenizer):
    [example] = encode("chip2", DOCSTRING, byte_tokenizer)
    assert runs(example, byte_tokenizer) == [
        (False, "<s><human>: What is NF4?\n<bot>: "), (True, "A 4-bit data type.</s>"),
        (False, "<human>: Why?\n<bot>: "), (True, "It fits normal weights.</s>"),
    ]


@pytest.mark.parametrize("text, message", [
    ("What is NF4?\n<bot>: A type.", "format 'chip2' needs text of the form '<human>: ...\\n<bot>: ...', "
                                     "found 'What is NF4?\\n<bot>: A type.'"),
    ("<human>: a\n<human>: b\n<bot>: c", "format 'chip2': human and bot must alternate, starting with human; "
                                         "found human, human, bot"),
    ("<human>: a\n<bot>: b\n<human>: c", "format 'chip2': human and bot must alternate, starting with human; "
                                         "found human, bot, human"),
])
def test_malformed_text_names_the_record(text, message):
    with pytest.raises(DataError) as info:
        conversations_of([DOCSTRING, {"text": text}], Chip2Dataset(path="c.jsonl"), Counter())
    assert str(info.value) == f"c.jsonl: record 1: {message}"
