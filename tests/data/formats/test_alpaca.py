"""Alpaca: the QLoRA paper's two templates, the column mapping, the mask, the real sample."""

import json
from collections import Counter

import pytest

from qlorafx.data.build import DataError, conversations_of
from qlorafx.data.formats import FORMATS, RecordError, Turn
from qlorafx.data.formats.alpaca import PROMPT_NO_INPUT, PROMPT_WITH_INPUT, AlpacaDataset
from tests.data.helpers import encode, runs

NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\nName a primary color.\n\n### Response: "
)
WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\nTranslate to French.\n\n### Input:\ncat\n\n### Response: "
)


def test_templates_are_the_qlora_papers():
    assert PROMPT_NO_INPUT.format(instruction="Name a primary color.") == NO_INPUT
    assert PROMPT_WITH_INPUT.format(instruction="Translate to French.", input="cat") == WITH_INPUT


@pytest.mark.parametrize("record", [
    {"instruction": "Name a primary color.", "output": "Red."},
    {"instruction": "Name a primary color.", "input": "", "output": "Red."},
    {"instruction": "Name a primary color.", "input": None, "output": "Red."},
])
def test_empty_or_missing_input_uses_the_template_without_input(record):
    assert FORMATS.get("alpaca").conversations(record) == [[Turn("user", NO_INPUT), Turn("assistant", "Red.")]]


def test_input_uses_the_template_with_input():
    conversations = FORMATS.get("alpaca").conversations({"instruction": "Translate to French.", "input": "cat", "output": "chat"})
    assert conversations == [[Turn("user", WITH_INPUT), Turn("assistant", "chat")]]


def test_column_mapping_reads_differently_named_fields():
    options = AlpacaDataset(path="x", columns={"instruction": "question", "output": "answer"})
    record = {"question": "Translate to French.", "input": "cat", "answer": "chat"}
    assert FORMATS.get("alpaca").conversations(record, options) == [[Turn("user", WITH_INPUT), Turn("assistant", "chat")]]
    with pytest.raises(RecordError, match="needs field 'answer'; the record has input, output, question"):
        FORMATS.get("alpaca").conversations({"question": "q", "input": "", "output": "o"}, options)


@pytest.mark.parametrize("record, message", [
    ({"instruction": "x"}, "format 'alpaca' needs field 'output'; the record has instruction"),
    ({"output": "x", "text": "y"}, "format 'alpaca' needs field 'instruction'; the record has output, text"),
    ({"instruction": 3, "output": "x"}, "needs field 'instruction' to be text, found int"),
    (["instruction", "output"], "expects each record to be an object, found list"),
])
def test_bad_records_name_the_field(record, message):
    with pytest.raises(RecordError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FORMATS.get("alpaca").conversations(record)


def test_real_alpaca_sample_renders(shared_data):
    records = json.loads((shared_data / "alpaca" / "alpaca_5000.json").read_text())
    fmt = FORMATS.get("alpaca")
    for record in records[:200]:
        [(prompt, response)] = fmt.conversations(record)
        assert prompt.text.endswith("### Response: ") and response.text == record["output"]
        assert ("### Input:\n" + record["input"] in prompt.text) == bool(record["input"])


def test_rendered_text_and_mask_token_by_token(byte_tokenizer):
    [example] = encode("alpaca", {"instruction": "Name a primary color.", "input": "", "output": "Red."}, byte_tokenizer)
    assert runs(example, byte_tokenizer) == [(False, "<s>" + NO_INPUT), (True, "Red.</s>")]
    assert len(example.input_ids) == 1 + len(NO_INPUT) + len("Red.") + 1  # bytes, BOS and EOS
    [example] = encode("alpaca", {"instruction": "Translate to French.", "input": "cat", "output": "chat"}, byte_tokenizer)
    assert runs(example, byte_tokenizer) == [(False, "<s>" + WITH_INPUT), (True, "chat</s>")]


def test_train_on_inputs_trains_the_prompt_too_but_not_bos(byte_tokenizer):
    [example] = encode("alpaca", {"instruction": "Name a primary color.", "output": "Red."}, byte_tokenizer,
                       train_on_inputs=True)
    assert runs(example, byte_tokenizer) == [(False, "<s>"), (True, NO_INPUT + "Red.</s>")]


def test_a_missing_field_names_the_field_the_format_and_the_record_index():
    records = [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}, {"instruction": "e", "input": "f"}]
    with pytest.raises(DataError) as info:
        conversations_of(records, AlpacaDataset(path="data/train.jsonl"), Counter())
    assert str(info.value) == ("data/train.jsonl: record 2: format 'alpaca' needs field 'output'; "
                               "the record has input, instruction")


def test_a_column_mapping_to_a_missing_column_lists_the_records_columns():
    options = AlpacaDataset(path="qa.jsonl", columns={"instruction": "question", "output": "answer"})
    records = [{"question": "q", "answer": "a"}, {"question": "q", "reply": "a", "context": ""}]
    with pytest.raises(DataError) as info:
        conversations_of(records, options, Counter())
    assert str(info.value) == ("qa.jsonl: record 1: format 'alpaca' needs field 'answer'; "
                               "the record has context, question, reply")


def test_every_real_record_renders_and_trains_exactly_its_output(shared_data, byte_tokenizer):
    records = json.loads((shared_data / "alpaca" / "alpaca_5000.json").read_text())
    assert len(records) == 5000
    for record in records[::25]:  # 200 of them, spread over the file
        [example] = encode("alpaca", record, byte_tokenizer)
        template = PROMPT_WITH_INPUT if record["input"] else PROMPT_NO_INPUT
        assert runs(example, byte_tokenizer) == [(False, "<s>" + template.format(**record)), (True, record["output"] + "</s>")]
