"""The judging: every pair of answers to a question, shown to the judge in both orders (or one, drawn
by a hash), each judgment cached by the whole request: the question, the two answers in their
order, the judge (URL, model, sampling) and the prompt. Then each pair's judgments become a match.

A match's outcome: the verdict both orders agree on; a verdict that flips with the order (A wins
shown first, B wins shown first; or a win one way and a tie the other) is a tie, marked
inconsistent; a match with an unparseable judgment has no outcome and is counted as an error.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Callable

from qlorafx.judge.answers import Answer
from qlorafx.judge.cache import Cache, request_key
from qlorafx.judge.client import Endpoint
from qlorafx.judge.questions import Question
from qlorafx.judge.spec import Comparison
from qlorafx.judge.tasks import run_together
from qlorafx.judge.verdicts import DEFAULT_PROMPTS, Verdict, parser_for, render


@dataclass(frozen=True)
class Judgment:
    question_id: str
    first: str  # the contestant whose answer was shown first (A, or 1)
    second: str
    text: str  # the judge's reply, as received
    verdict: Verdict | None
    error: str | None  # why the reply could not be read (verdict None)


@dataclass(frozen=True)
class Match:
    question_id: str
    a: str
    b: str
    outcome: float | None  # 1: a won, 0: b won, 0.5: a tie; None: a judgment was unparseable
    inconsistent: bool  # the verdict changed with the order (counted as a tie)
    scores: tuple[float, float] | None  # a's and b's mean score over the orders (mode score)


def pairs(comparison: Comparison) -> list[tuple[str, str]]:
    names = [c.name for c in comparison.contestants]
    reference = comparison.ratings.reference
    if comparison.matches == "against_reference":
        return [(name, reference) for name in names if name != reference]
    return list(itertools.combinations(names, 2))


def orders(comparison: Comparison, question: Question, a: str, b: str) -> list[tuple[str, str]]:
    """(first, second) to show. With one order, a hash picks it: stable across reruns and added contestants,
    and half the pairs each way on average."""
    if comparison.judge.both_orders:
        return [(a, b), (b, a)]
    digest = hashlib.sha256(f"{question.id}\0{a}\0{b}".encode("utf-8")).digest()
    return [(a, b)] if digest[0] % 2 == 0 else [(b, a)]


def judgment_request(comparison: Comparison, question: Question, first: Answer, second: Answer) -> dict:
    j = comparison.judge
    prompt = j.prompt or DEFAULT_PROMPTS[j.mode]
    return {"base_url": comparison.endpoints[j.endpoint].base_url, "model": j.model, "mode": j.mode,
            "messages": render(prompt, question.text, first.text, second.text),
            "max_tokens": j.max_tokens, "temperature": j.temperature}


def schedule(comparison: Comparison, questions: list[Question]) -> list[tuple[Question, str, str]]:
    return [(q, first, second) for q in questions for a, b in pairs(comparison) for first, second in orders(comparison, q, a, b)]


def missing_judgments(comparison: Comparison, questions: list[Question], answers: dict[tuple[str, str], Answer],
                      cache: Cache) -> int:
    return sum(cache.get("judgments", request_key(judgment_request(comparison, q, answers[f, q.id], answers[s, q.id]))) is None
               for q, f, s in schedule(comparison, questions))


async def judge_all(comparison: Comparison, questions: list[Question], answers: dict[tuple[str, str], Answer],
                    endpoint: Endpoint, cache: Cache, done: Callable[[], None] = lambda: None) -> list[Judgment]:
    """Every scheduled judgment, in schedule order; asks only for what the cache lacks, caching each as it arrives."""
    parse = parser_for(comparison.judge)
    found: dict[int, Judgment] = {}

    async def one(index: int, question: Question, first: str, second: str) -> None:
        request = judgment_request(comparison, question, answers[first, question.id], answers[second, question.id])
        key = request_key(request)
        reply = cache.get("judgments", key)
        if reply is None:
            got = await endpoint.chat(request["model"], request["messages"], where="judge.model",
                                      max_tokens=request["max_tokens"], temperature=request["temperature"])
            reply = {"text": got.text, "finish_reason": got.finish_reason}
            cache.put("judgments", key, reply)  # no await before this: a judgment received is a judgment kept
        verdict = parse(reply["text"])
        if isinstance(verdict, str) and reply.get("finish_reason") == "length":  # the likely cause, for the report
            verdict += "; the reply stopped at judge.max_tokens, before its verdict: raise it"
        found[index] = Judgment(question.id, first, second, reply["text"],
                                verdict if isinstance(verdict, Verdict) else None,
                                verdict if isinstance(verdict, str) else None)
        done()

    await run_together([one(i, q, f, s) for i, (q, f, s) in enumerate(schedule(comparison, questions))])
    return [found[i] for i in range(len(found))]


def _outcome_for(judgment: Judgment, a: str) -> float | None:
    """1 if ``a`` won this judgment, 0 if the other answer did, 0.5 for a tie; None without a verdict."""
    if judgment.verdict is None:
        return None
    if judgment.verdict.winner == "tie":
        return 0.5
    winner = judgment.first if judgment.verdict.winner == "first" else judgment.second
    return 1.0 if winner == a else 0.0


def matches(comparison: Comparison, questions: list[Question], judgments: list[Judgment]) -> list[Match]:
    """One match per question and pair, its judgments combined."""
    by_key: dict[tuple[str, frozenset], list[Judgment]] = {}
    for j in judgments:
        by_key.setdefault((j.question_id, frozenset((j.first, j.second))), []).append(j)
    result = []
    for question in questions:
        for a, b in pairs(comparison):
            judged = by_key.get((question.id, frozenset((a, b))), [])
            outcomes = [_outcome_for(j, a) for j in judged]
            scores = None
            if not judged or None in outcomes:
                outcome, inconsistent = None, False
            else:
                inconsistent = len(set(outcomes)) > 1
                outcome = 0.5 if inconsistent else outcomes[0]  # a verdict that flips with the order is a tie
                if all(j.verdict.scores for j in judged):
                    score_a = [j.verdict.scores[0 if j.first == a else 1] for j in judged]
                    score_b = [j.verdict.scores[1 if j.first == a else 0] for j in judged]
                    scores = (sum(score_a) / len(score_a), sum(score_b) / len(score_b))
            result.append(Match(question.id, a, b, outcome, inconsistent, scores))
    return result
