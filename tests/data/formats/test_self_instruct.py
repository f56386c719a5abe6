"""Self-Instruct: {prompt, completion} rows and {instruction, instances} task rows, golden and on the real files."""

import json
from collections import Counter

import pytest

from qlorafx.data.build import DataError, conversations_of
from qlorafx.data.formats import FORMATS, RecordError, Turn
from qlorafx.data.formats.self_instruct import SelfInstructDataset
from tests.data.helpers import encode, runs

FMT = FORMATS.get("self_instruct")


def _records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_prompt_completion_strips_the_trailing_endoftext():
    record = {"prompt": "Is this review positive?\nGreat phone!\nAnswer:", "completion": " Yes<|endoftext|>"}
    assert FMT.conversations(record) == [[Turn("user", "Is this review positive?\nGreat phone!\nAnswer:"),
                                          Turn("assistant", " Yes")]]


@pytest.mark.parametrize("completion, response", [
    (" Yes", " Yes"),  # nothing to strip
    (" Yes<|endoftext|><|endoftext|>", " Yes<|endoftext|>"),  # only the one trailing marker
    (" a<|endoftext|>b", " a<|endoftext|>b"),  # not trailing: kept
    ("<|endoftext|>", ""),
])
def test_only_one_trailing_endoftext_is_stripped(completion, response):
    assert FMT.conversations({"prompt": "P", "completion": completion}) == [[Turn("user", "P"), Turn("assistant", response)]]


def test_task_rows_give_one_example_per_instance():
    record = {"instruction": " Give a synonym. ", "instances": [
        {"input": "happy", "output": "glad "},
        {"input": "", "output": "big"},
        {"output": "small"},  # no input at all
        {"input": "  ", "output": "\nquick"},  # blank input counts as none
    ]}
    assert FMT.conversations(record) == [
        [Turn("user", "Give a synonym.\nInput: happy\nOutput:"), Turn("assistant", " glad")],
        [Turn("user", "Give a synonym.\nOutput:"), Turn("assistant", " big")],
        [Turn("user", "Give a synonym.\nOutput:"), Turn("assistant", " small")],
        [Turn("user", "Give a synonym.\nOutput:"), Turn("assistant", " quick")],
    ]
    assert FMT.conversations({"instruction": "x", "instances": []}) == []


def test_rendered_text_and_mask_token_by_token(byte_tokenizer):
    [example] = encode("self_instruct", {"prompt": "Is it good?\nAnswer:", "completion": " Yes<|endoftext|>"}, byte_tokenizer)
    assert runs(example, byte_tokenizer) == [(False, "<s>Is it good?\nAnswer:"), (True, " Yes</s>")]
    task = {"instruction": "Give a synonym.", "instances": [{"input": "happy", "output": "glad"}, {"input": "", "output": "big"}]}
    first, second = encode("self_instruct", task, byte_tokenizer)
    assert runs(first, byte_tokenizer) == [(False, "<s>Give a synonym.\nInput: happy\nOutput:"), (True, " glad</s>")]
    assert runs(second, byte_tokenizer) == [(False, "<s>Give a synonym.\nOutput:"), (True, " big</s>")]


@pytest.mark.parametrize("records, message", [
    ([{"prompt": "p", "completion": "c"}, {"prompt": "p"}],
     "s.jsonl: record 1: format 'self_instruct' needs field 'completion'; the record has prompt"),
    ([{"instruction": "i", "instances": [{"input": "x"}]}],
     "s.jsonl: record 0: format 'self_instruct' needs field 'output'; the record has input"),
    ([{"instruction": "i", "instances": [{"output": "o"}]}, {"instances": [{"output": "o"}]}],
     "s.jsonl: record 1: format 'self_instruct' needs field 'instruction'; the record has instances"),
    ([{"instruction": "i", "instances": "o"}],
     "s.jsonl: record 0: format 'self_instruct' needs field 'instances' to be a list, found str"),
    ([{"question": "q", "answer": "a"}],
     "s.jsonl: record 0: format 'self_instruct' needs {prompt, completion} or {instruction, instances}; "
     "the record has answer, question"),
])
def test_bad_records_name_field_format_and_index(records, message):
    with pytest.raises(DataError) as info:
        conversations_of(records, SelfInstructDataset(path="s.jsonl"), Counter())
    assert str(info.value) == message


def test_a_bad_record_is_a_record_error():
    with pytest.raises(RecordError):
        FMT.conversations({"prompt": "p", "completion": 3})


def test_real_prompt_completion_files(shared_data, byte_tokenizer):
    files = sorted((shared_data / "self_instruct" / "prompt_completion").glob("*.jsonl"))
    assert len(files) == 5
    for path in files:
        records = _records(path)
        assert len(records) == 200
        conversations = conversations_of(records, SelfInstructDataset(path=str(path)), Counter())
        assert len(conversations) == 200
        for record, [prompt, response] in zip(records, conversations):
            assert record["completion"].endswith("<|endoftext|>")  # the published shape
            assert prompt == Turn("user", record["prompt"])
            assert response == Turn("assistant", record["completion"][: -len("<|endoftext|>")])
            assert "<|endoftext|>" not in response.text
        for record in records:  # every record renders, and trains on exactly its completion and EOS
            [example] = encode("self_instruct", record, byte_tokenizer)
            expected = [(False, "<s>" + record["prompt"]), (True, record["completion"].removesuffix("<|endoftext|>") + "</s>")]
            assert runs(example, byte_tokenizer) == expected


def test_real_seed_tasks_give_one_example_per_instance(shared_data):
    path = shared_data / "self_instruct" / "seed_tasks.jsonl"
    records = _records(path)
    instances = [(r["instruction"], i) for r in records for i in r["instances"]]
    assert len(records) == 175 and len(instances) == 175
    conversations = conversations_of(records, SelfInstructDataset(path=str(path)), Counter())
    assert len(conversations) == len(instances)
    with_input = 0
    for (instruction, instance), [prompt, response] in zip(instances, conversations):
        if instance["input"].strip():
            with_input += 1
            assert prompt.text == f"{instruction.strip()}\nInput: {instance['input'].strip()}\nOutput:"
        else:
            assert prompt.text == f"{instruction.strip()}\nOutput:"
        assert response == Turn("assistant", " " + instance["output"].strip())
    assert with_input == 125  # 50 seed tasks have an empty input
