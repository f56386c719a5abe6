"""Each contestant answers each question once: the answers are cached, a rerun asks for none again.

The cache key is the whole request (endpoint URL, model name, messages, sampling) and, for a
contestant that is a qlorafx run, its run.json: a run trained again answers again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from qlorafx.judge.cache import Cache, request_key
from qlorafx.judge.client import Endpoint
from qlorafx.judge.questions import Question
from qlorafx.judge.spec import Comparison, ContestantSpec
from qlorafx.judge.tasks import run_together


@dataclass(frozen=True)
class Answer:
    contestant: str
    question_id: str
    text: str
    finish_reason: str | None  # 'length': cut at generation.max_tokens


def _run_fingerprint(contestant: ContestantSpec) -> str | None:
    if contestant.run is None:
        return None
    return hashlib.sha256((Path(contestant.run) / "run.json").read_bytes()).hexdigest()


def answer_request(comparison: Comparison, contestant: ContestantSpec, question: Question) -> dict:
    g = comparison.generation
    messages = ([{"role": "system", "content": g.system}] if g.system else []) + [{"role": "user", "content": question.text}]
    return {"base_url": comparison.endpoints[contestant.endpoint].base_url, "model": contestant.served_model,
            "messages": messages, "max_tokens": g.max_tokens, "temperature": g.temperature, "top_p": g.top_p,
            "run": _run_fingerprint(contestant)}


def missing_answers(comparison: Comparison, questions: list[Question], cache: Cache) -> int:
    return sum(cache.get("answers", request_key(answer_request(comparison, c, q))) is None
               for c in comparison.contestants for q in questions)


async def gather_answers(comparison: Comparison, questions: list[Question], endpoints: dict[str, Endpoint],
                         cache: Cache, done: Callable[[], None] = lambda: None) -> dict[tuple[str, str], Answer]:
    """{(contestant, question id): answer}; asks only for what the cache lacks, and caches each as it arrives."""
    answers: dict[tuple[str, str], Answer] = {}

    async def one(index: int, contestant: ContestantSpec, question: Question) -> None:
        request = answer_request(comparison, contestant, question)
        key = request_key(request)
        found = cache.get("answers", key)
        if found is None:
            reply = await endpoints[contestant.endpoint].chat(
                request["model"], request["messages"], where=f"contestants.{index}.model",
                max_tokens=request["max_tokens"], temperature=request["temperature"], top_p=request["top_p"])
            found = {"text": reply.text, "finish_reason": reply.finish_reason}
            cache.put("answers", key, found)  # no await before this: a reply received is a reply kept
        answers[contestant.name, question.id] = Answer(contestant.name, question.id, found["text"], found["finish_reason"])
        done()

    await run_together([one(i, c, q) for i, c in enumerate(comparison.contestants) for q in questions])
    return answers

