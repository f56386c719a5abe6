"""The question file: the bundled set, the Vicuna and MT-Bench layouts, and errors by line."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from qlorafx.judge.questions import BUNDLED, QuestionError, read_questions


def lines(tmp_path, *records) -> str:
    path = tmp_path / "q.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


def test_the_bundled_set_loads_with_three_questions_per_category():
    questions = read_questions(None)
    assert len(questions) == 24 and len({q.id for q in questions}) == 24
    assert set(Counter(q.category for q in questions).values()) == {3}
    assert all(len(q.text) > 20 for q in questions)
    assert BUNDLED.is_file()


def test_vicuna_and_mt_bench_layouts(tmp_path):
    path = lines(tmp_path, {"question_id": 1, "text": "Hi?", "category": "generic"},
                 {"id": "b", "question": "Why?"}, {"question_id": 81, "category": "writing", "turns": ["Write."]})
    questions = read_questions(path)
    assert [(q.id, q.text, q.category) for q in questions] == [("1", "Hi?", "generic"), ("b", "Why?", ""), ("81", "Write.", "writing")]


@pytest.mark.parametrize("record, message", [
    ("{not json", "q.jsonl:2: not valid JSON"),
    ([1, 2], "q.jsonl:2: expected a JSON object"),
    ({"text": "no id"}, "q.jsonl:2: needs a question_id"),
    ({"question_id": 2, "text": "  "}, "q.jsonl:2: needs 'text'"),
    ({"question_id": 2, "turns": ["one", "two"]}, "q.jsonl:2: 'turns' holds 2 turns; the judge compares single answers"),
    ({"question_id": 1, "text": "again"}, "q.jsonl:2: question_id '1' is already used on line 1"),
])
def test_a_bad_line_is_named(tmp_path, record, message):
    with pytest.raises(QuestionError, match=message):
        read_questions(lines(tmp_path, {"question_id": 1, "text": "first"}, record))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(QuestionError, match="no such file; give a JSONL of questions"):
        read_questions(tmp_path / "absent.jsonl")
    with pytest.raises(QuestionError, match="holds no question"):
        read_questions(lines(tmp_path, ""))
