"""Anthropic HH-RLHF: the chosen dialogue, its assistant turns trained; the rejected one unused."""

from collections import Counter

import pytest

from qlorafx.data.build import DataError, conversations_of
from qlorafx.data.formats import FORMATS, Turn
from qlorafx.data.formats.hh_rlhf import HhRlhfDataset
from tests.data.helpers import encode, runs

FMT = FORMATS.get("hh_rlhf")
DOCSTRING = {"chosen": "\n\nHuman: What is NF4?\n\nAssistant: A 4-bit data type.\n\nHuman: Why?\n\nAssistant: It fits.",
             "rejected": "\n\nHuman: What is NF4?\n\nAssistant: No idea.\n\nHuman: Why?\n\nAssistant: Why not."}
TURNS = [Turn("user", "\n\nHuman: What is NF4?\n\nAssistant: "), Turn("assistant", "A 4-bit data type."),
         Turn("user", "\n\nHuman: Why?\n\nAssistant: "), Turn("assistant", "It fits.")]


def test_the_docstring_record_is_its_chosen_dialogue():
    assert FMT.conversations(DOCSTRING) == [TURNS]
    assert FMT.conversations({"chosen": DOCSTRING["chosen"]}) == [TURNS]  # rejected is not needed


def test_a_reply_over_several_paragraphs_stays_one_turn():
    record = {"chosen": "Human: List two.\n\nAssistant: One.\n\nTwo.\n"}  # no leading blank line, as some rows
    assert FMT.conversations(record) == [[Turn("user", "\n\nHuman: List two.\n\nAssistant: "),
                                          Turn("assistant", "One.\n\nTwo.")]]


def test_only_the_assistant_turns_carry_loss(byte_tokenizer):
    [example] = encode("hh_rlhf", DOCSTRING, byte_tokenizer)
    assert runs(example, byte_tokenizer) == [
        (False, "<s>\n\nHuman: What is NF4?\n\nAssistant: "), (True, "A 4-bit data type.</s>"),
        (False, "\n\nHuman: Why?\n\nAssistant: "), (True, "It fits.</s>"),
    ]


@pytest.mark.parametrize("record, message", [
    ({"rejected": DOCSTRING["rejected"]}, "format 'hh_rlhf' needs field 'chosen'; the record has rejected"),
    ({"chosen": "\n\nHuman: a\n\nHuman: b\n\nAssistant: c"},
     "format 'hh_rlhf': Human and Assistant must alternate, starting with Human; found Human, Human, Assistant"),
    ({"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c"},
     "format 'hh_rlhf': Human and Assistant must alternate, starting with Human; found Human, Assistant, Human"),
    ({"chosen": "just text"}, "format 'hh_rlhf' needs text of the form 'Human: ...\\n\\nAssistant: ...', "
                              "found 'just text'"),
])
def test_malformed_records_name_the_record(record, message):
    with pytest.raises(DataError) as info:
        conversations_of([DOCSTRING, record], HhRlhfDataset(path="hh.jsonl"), Counter())
    assert str(info.value) == f"hh.jsonl: record 1: {message}"
