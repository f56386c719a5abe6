"""The judge's prompt and the strict reading of its verdict.

pairwise: the judge explains, then ends with a line holding only ``[[A]]``, ``[[B]]`` or ``[[C]]``
(a tie), as in MT-Bench's pairwise prompt; ``Final verdict: [[A]]`` is read too. With
``verdict_format: digits`` the last line holds only ``1``, ``2`` or ``3`` (a tie), as the QLoRA
paper's three-class prompt asks. Nothing else is read: a reply whose last line is not one of these
is unparseable, counted and shown, never guessed at.

score: the judge's first line holds two scores from 1 to 10, for the first and the second answer,
separated by a space (``8 7``), as in the Vicuna prompt the QLoRA paper used for its relative
scores; the higher score wins, equal scores tie.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal

from qlorafx.judge.spec import JudgeSpec, PromptSpec

PAIRWISE = PromptSpec(
    system=(
        "You are an impartial judge. You will see a user's question and the answers of two AI assistants, "
        "A and B. Decide which assistant answered the question better: consider whether it does what the user "
        "asked, and its helpfulness, correctness, relevance, depth and clarity. Do not let the order in which "
        "the answers appear, their length, or the assistants' names sway you. First compare the two answers in "
        "a short explanation. Then end your reply with one last line that holds only your verdict: [[A]] if "
        "assistant A is better, [[B]] if assistant B is better, [[C]] for a tie."
    ),
    user=(
        "[Question]\n{question}\n\n"
        "[Answer of assistant A]\n{answer_a}\n[End of answer of assistant A]\n\n"
        "[Answer of assistant B]\n{answer_b}\n[End of answer of assistant B]"
    ),
)

SCORE = PromptSpec(
    system="You are a careful and impartial judge of the quality of answers.",
    user=(
        "[Question]\n{question}\n\n"
        "[Answer of assistant 1]\n{answer_a}\n[End of answer of assistant 1]\n\n"
        "[Answer of assistant 2]\n{answer_b}\n[End of answer of assistant 2]\n\n"
        "[Task]\nRate how helpful, relevant, accurate and detailed each answer is, with an overall score from 1 "
        "to 10 for each assistant, higher meaning better. On the first line write only the two scores, the "
        "score of assistant 1 and then that of assistant 2, separated by a space. From the second line on, "
        "explain your scores; the order in which the answers appear must not affect your judgment."
    ),
)

DEFAULT_PROMPTS = {"pairwise": PAIRWISE, "score": SCORE}

_PLACEHOLDER = re.compile(r"\{(question|answer_a|answer_b)\}")
_PAIRWISE_LINE = re.compile(r"(?:final verdict:\s*)?\[\[([ABC])\]\]", re.IGNORECASE)
_NUMBER = r"(10(?:\.0+)?|[1-9](?:\.\d+)?)"  # 1 to 10
_SCORE_LINE = re.compile(rf"{_NUMBER}\s+{_NUMBER}")

Winner = Literal["first", "second", "tie"]


@dataclass(frozen=True)
class Verdict:
    winner: Winner  # the answer shown first, the one shown second, or neither
    scores: tuple[float, float] | None = None  # (first, second) in score mode


def render(prompt: PromptSpec, question: str, first: str, second: str) -> list[dict[str, str]]:
    """The judge's messages: the answer shown first is A (or 1). Substituted in one pass, so a placeholder
    written inside an answer stays as written."""
    values = {"question": question, "answer_a": first, "answer_b": second}
    user = _PLACEHOLDER.sub(lambda m: values[m.group(1)], prompt.user)
    return ([{"role": "system", "content": prompt.system}] if prompt.system else []) + [{"role": "user", "content": user}]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_pairwise(text: str) -> Verdict | str:
    """The verdict, or why there is none."""
    lines = _lines(text)
    if not lines:
        return "empty reply"
    found = _PAIRWISE_LINE.fullmatch(lines[-1])
    if not found:
        return f"last line is not [[A]], [[B]] or [[C]]: {lines[-1][:80]!r}"
    return Verdict({"A": "first", "B": "second", "C": "tie"}[found.group(1).upper()])


def parse_digits(text: str) -> Verdict | str:
    lines = _lines(text)
    if not lines:
        return "empty reply"
    if lines[-1] not in ("1", "2", "3"):
        return f"last line is not 1, 2 or 3: {lines[-1][:80]!r}"
    return Verdict({"1": "first", "2": "second", "3": "tie"}[lines[-1]])


def parse_score(text: str) -> Verdict | str:
    lines = _lines(text)
    if not lines:
        return "empty reply"
    found = _SCORE_LINE.fullmatch(lines[0])
    if not found:
        return f"first line is not two scores from 1 to 10: {lines[0][:80]!r}"
    first, second = float(found.group(1)), float(found.group(2))
    winner: Winner = "first" if first > second else "second" if second > first else "tie"
    return Verdict(winner, (first, second))


def parser_for(judge: JudgeSpec) -> Callable[[str], Verdict | str]:
    if judge.mode == "score":
        return parse_score
    return parse_digits if judge.verdict_format == "digits" else parse_pairwise
