"""Unnatural Instructions: one example per instance (and per reformulation when asked), as qlora.py's extractor."""

from collections import Counter

import pytest

from qlorafx.data.build import DataError, conversations_of
from qlorafx.data.formats import FORMATS, Turn
from qlorafx.data.formats.unnatural_instructions import UnnaturalInstructionsDataset
from tests.data.helpers import encode, runs

FMT = FORMATS.get("unnatural_instructions")
DOCSTRING = {"instruction": "Name the color of the object.", "instances": [
    {"instruction_with_input": "Name the color of the object.\nObject: banana", "input": "banana",
     "output": "Yellow."}],
    "reformulations": [{"instruction_with_input": "What color is a banana?", "output": "Yellow."}]}
INSTANCE = [Turn("user", "Name the color of the object.\nObject: banana"), Turn("assistant", "Yellow.")]
REFORMULATION = [Turn("user", "What color is a banana?"), Turn("assistant", "Yellow.")]


def test_each_instance_is_one_conversation():
    two = {**DOCSTRING, "instances": [*DOCSTRING["instances"],
                                      {"instruction_with_input": "Name the color of the object.\nObject: sky",
                                       "output": "Blue."}]}
    assert FMT.conversations(two) == [INSTANCE, [Turn("user", "Name the color of the object.\nObject: sky"),
                                                 Turn("assistant", "Blue.")]]


def test_reformulations_only_when_asked_and_where_there_are_some():
    assert FMT.conversations(DOCSTRING) == [INSTANCE]
    asked = UnnaturalInstructionsDataset(path="x", reformulations=True)
    assert FMT.conversations(DOCSTRING, asked) == [INSTANCE, REFORMULATION]
    assert FMT.conversations({**DOCSTRING, "reformulations": None}, asked) == [INSTANCE]
    assert FMT.conversations({"instances": DOCSTRING["instances"]}, asked) == [INSTANCE]


def test_rendered_text_and_mask_token_by_token(byte_tokenizer):
    [example] = encode("unnatural_instructions", DOCSTRING, byte_tokenizer)
    assert runs(example, byte_tokenizer) == [(False, "<s>Name the color of the object.\nObject: banana"),
                                             (True, "Yellow.</s>")]


@pytest.mark.parametrize("record, message", [
    ({"instruction": "x"}, "format 'unnatural_instructions' needs field 'instances' to be a list, found nothing"),
    ({"instances": [{"input": "banana", "output": "Yellow."}]},
     "format 'unnatural_instructions' needs field 'instruction_with_input'; the record has input, output"),
    ({"instances": ["Name the color."]},
     "format 'unnatural_instructions' expects each record to be an object, found str"),
])
def test_malformed_records_name_the_field(record, message):
    with pytest.raises(DataError) as info:
        conversations_of([DOCSTRING, record], UnnaturalInstructionsDataset(path="u.jsonl"), Counter())
    assert str(info.value) == f"u.jsonl: record 1: {message}"
