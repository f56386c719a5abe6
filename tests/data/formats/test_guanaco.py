"""Guanaco's flattened text (### Human: ... ### Assistant: ...) read back as conversations."""

from collections import Counter

import pytest

from qlorafx.data.build import DataError, conversations_of
from qlorafx.data.formats import FORMATS, Turn
from qlorafx.data.formats.guanaco import GuanacoDataset
from tests.data.helpers import encode, runs

FMT = FORMATS.get("guanaco")
DOCSTRING = {"text": "### Human: What is NF4?### Assistant: A 4-bit data type.### Human: Why?### Assistant: It fits normal weights."}
TURNS = [Turn("user", "### Human: What is NF4?### Assistant: "), Turn("assistant", "A 4-bit data type."),
         Turn("user", "### Human: Why?### Assistant: "), Turn("assistant", "It fits normal weights.")]


def test_the_docstring_record():
    assert FMT.conversations(DOCSTRING) == [TURNS]


def test_whitespace_around_turns_is_normalised():
    record = {"text": "### Human:What is NF4?\n### Assistant:  A 4-bit data type.\n\n### Human: Why? ### Assistant: It fits normal weights.\n"}
    assert FMT.conversations(record) == [TURNS]


def test_another_column():
    assert FMT.conversations({"dialogue": DOCSTRING["text"]}, GuanacoDataset(path="x", column="dialogue")) == [TURNS]


def test_rendered_text_and_mask_token_by_token(byte_tokenizer):
    [example] = encode("guanaco", DOCSTRING, byte_tokenizer)
    assert runs(example, byte_tokenizer) == [
        (False, "<s>### Human: What is NF4?### Assistant: "), (True, "A 4-bit data type.</s>"),
        (False, "### Human: Why?### Assistant: "), (True, "It fits normal weights.</s>"),
    ]


def test_oasst_renders_in_the_same_form(byte_tokenizer):
    oasst = {"message_tree_id": "t", "tree_state": "ready_for_export", "prompt": {
        "role": "prompter", "text": "What is NF4?", "replies": [{"role": "assistant", "text": "A 4-bit data type.", "rank": 0, "replies": [
            {"role": "prompter", "text": "Why?", "replies": [{"role": "assistant", "text": "It fits normal weights.", "rank": 0}]}]}]}}
    assert FORMATS.get("oasst").conversations(oasst) == FMT.conversations(DOCSTRING)


@pytest.mark.parametrize("text, message", [
    ("Hello ### Human: hi### Assistant: yo",
     "format 'guanaco' needs text of the form '### Human: ...### Assistant: ...', found 'Hello ### Human: hi### Assistant: yo'"),
    ("### Human: hi", "format 'guanaco' needs text of the form '### Human: ...### Assistant: ...', found '### Human: hi'"),
    ("### Human: a### Human: b### Assistant: c",
     "format 'guanaco': Human and Assistant must alternate, starting with Human; found Human, Human, Assistant"),
    ("### Assistant: a### Human: b", "format 'guanaco': Human and Assistant must alternate, starting with Human; found Assistant, Human"),
    ("### Human: a### Assistant: b### Human: c",
     "format 'guanaco': Human and Assistant must alternate, starting with Human; found Human, Assistant, Human"),
])
def test_malformed_text_names_the_record(text, message):
    with pytest.raises(DataError) as info:
        conversations_of([DOCSTRING, {"text": text}], GuanacoDataset(path="g.jsonl"), Counter())
    assert str(info.value) == f"g.jsonl: record 1: {message}"


def test_a_missing_column_lists_the_records_columns():
    with pytest.raises(DataError) as info:
        conversations_of([{"prompt": "p", "chosen": "c"}], GuanacoDataset(path="g.jsonl"), Counter())
    assert str(info.value) == "g.jsonl: record 0: format 'guanaco' needs field 'text'; the record has chosen, prompt"
