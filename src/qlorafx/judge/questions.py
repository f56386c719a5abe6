"""The question set: a JSONL file, one question a line.

    {"question_id": 1, "category": "writing", "text": "Write a haiku about autumn."}

The Vicuna questions load as they are downloaded; ``id`` for ``question_id`` and ``question`` for
``text`` are read too, and MT-Bench's ``turns`` when it holds one turn (multi-turn questions are
refused: a pair of single answers is what the judge compares). Without a file, the set shipped
with qlorafx (``judge/data/questions.jsonl``, written for it, under its licence) is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from qlorafx.errors import UserError

BUNDLED = Path(__file__).resolve().parent / "data" / "questions.jsonl"
MAX_BYTES = 50_000_000


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    category: str = ""


class QuestionError(UserError):
    """The question file cannot be read, or a line of it is not a question."""


def _question(record: object, where: str) -> Question:
    if not isinstance(record, dict):
        raise QuestionError(f"{where}: expected a JSON object such as {{\"question_id\": 1, \"text\": \"...\"}}, "
                            f"found {type(record).__name__}")
    ident = record.get("question_id", record.get("id"))
    if isinstance(ident, bool) or not isinstance(ident, (int, str)) or str(ident) == "":
        raise QuestionError(f"{where}: needs a question_id (a number or a string); found {ident!r}")
    text = record.get("text", record.get("question"))
    if text is None and "turns" in record:
        turns = record["turns"]
        if not isinstance(turns, list) or len(turns) != 1:
            raise QuestionError(f"{where}: 'turns' holds {len(turns) if isinstance(turns, list) else 'no list of'} turns; "
                                f"the judge compares single answers: keep the first turn as 'text'")
        text = turns[0]
    if not isinstance(text, str) or not text.strip():
        raise QuestionError(f"{where}: needs 'text', the question (a non-empty string); found {text!r}")
    category = record.get("category", "")
    return Question(str(ident), text, category if isinstance(category, str) else str(category))


def read_questions(path: str | Path | None) -> list[Question]:
    """Every question of the file (the bundled set for None), in file order; a QuestionError naming the line."""
    path = BUNDLED if path is None else Path(path)
    if not path.is_file():
        raise QuestionError(f"{path}: {'not a file' if path.exists() else 'no such file'}; give a JSONL of questions "
                            f"(questions: PATH) or leave questions out for the set shipped with qlorafx")
    if path.stat().st_size > MAX_BYTES:
        raise QuestionError(f"{path}: larger than {MAX_BYTES:,} bytes; a question set is a few hundred lines")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise QuestionError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise QuestionError(f"{where}: not valid JSON ({err.msg}); each line must be one JSON object") from None
        question = _question(record, where)
        if question.id in seen:
            raise QuestionError(f"{where}: question_id {question.id!r} is already used on line {seen[question.id]}; "
                                f"give each question its own id")
        seen[question.id] = number
        questions.append(question)
    if not questions:
        raise QuestionError(f"{path}: holds no question")
    return questions
