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


def test_a_dialogue_that_does_not_alternate_is_refused_by_file_and_line_through_the_cli(tmp_path):
    """Refused as every format refuses a malformed record (the run does not start; validate lists it): by the file
    and line, as a malformed JSON line is named. Before, 'record 2', an index the user had to count lines for
    (blank lines are not records), where the line is 4."""
    import json

    from tests.cli.test_cli import qlorafx
    from tests.train.tiny import tiny_recipe

    data = tmp_path / "hh.jsonl"
    bad = {"chosen": "\n\nHuman: a\n\nHuman: b\n\nAssistant: c"}
    data.write_text(json.dumps(DOCSTRING) + "\n\n" + json.dumps(DOCSTRING) + "\n" + json.dumps(bad) + "\n")
    done = qlorafx("validate", tiny_recipe(tmp_path), f"data.datasets=[{{path: {data}, format: hh_rlhf}}]")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (f"{data}:4: format 'hh_rlhf': Human and Assistant must alternate, starting with Human; "
            "found Human, Human, Assistant") in done.stderr, done.stderr


def test_a_dialogue_with_an_empty_reply_is_left_out_and_counted_not_trained_as_a_bare_stop(byte_tokenizer):
    """HH's chosen dialogues sometimes end 'Assistant:' with nothing after it. Trained, that is a stop token right
    after the human's turn: the model learns to answer nothing. Left out, and counted as oasst counts the
    messages it filters (the data report shows it), rather than refused: it is a property of the published
    data the user cannot fix record by record."""
    empty_end = {"chosen": DOCSTRING["chosen"] + "\n\nHuman: And?\n\nAssistant:"}
    empty_middle = {"chosen": "\n\nHuman: a\n\nAssistant:   \n\nHuman: b\n\nAssistant: c"}
    counts = Counter()
    conversations = conversations_of([DOCSTRING, empty_end, empty_middle], HhRlhfDataset(path="hh.jsonl"), counts)
    assert conversations == [TURNS]
    assert counts == Counter({"dialogues with an empty assistant reply": 2})
