"""The strict verdict parsers and the prompt's rendering."""

from __future__ import annotations

import pytest

from qlorafx.judge.spec import JudgeSpec, PromptSpec
from qlorafx.judge.verdicts import PAIRWISE, Verdict, parse_digits, parse_pairwise, parse_score, parser_for, render


@pytest.mark.parametrize("text, winner", [
    ("A is more helpful.\n[[A]]", "first"),
    ("B explains it.\n\n  [[B]]  \n\n", "second"),
    ("Equally good.\n[[C]]", "tie"),
    ("Reasons.\nFinal verdict: [[b]]", "second"),
    ("I first thought [[A]] but no.\n[[B]]", "second"),  # the last line decides
])
def test_pairwise_verdicts(text, winner):
    assert parse_pairwise(text) == Verdict(winner)


@pytest.mark.parametrize("text, reason", [
    ("", "empty reply"),
    ("A is better.", "last line is not [[A]], [[B]] or [[C]]: 'A is better.'"),
    ("[[A]]\nbecause it is longer", "last line is not"),  # a verdict that is not last is not read
    ("**[[A]]**", "last line is not"),
    ("[[A]] [[B]]", "last line is not"),
    ("[[D]]", "last line is not"),
    ("My verdict: [[A]]", "last line is not"),
])
def test_pairwise_refuses_anything_else(text, reason):
    assert parse_pairwise(text).startswith(reason)


@pytest.mark.parametrize("text, scores, winner", [
    ("8 7\nThe first is better.", (8.0, 7.0), "first"),
    ("  6.5   9 \nreasons", (6.5, 9.0), "second"),
    ("10 10", (10.0, 10.0), "tie"),
    ("\n1 10\n", (1.0, 10.0), "second"),
])
def test_score_verdicts(text, scores, winner):
    assert parse_score(text) == Verdict(winner, scores)


@pytest.mark.parametrize("text", ["8, 7\nwith a comma", "Scores: 8 7", "8\n7", "0 5", "11 3", "8 7 6", "10.5 3", "", "eight seven"])
def test_score_refuses_anything_else(text):
    assert isinstance(parse_score(text), str)


def test_render_fills_the_placeholders_once():
    messages = render(PAIRWISE, "What is {answer_b}?", "I say {answer_b} and {question}", "second")
    assert messages[0] == {"role": "system", "content": PAIRWISE.system}
    user = messages[1]["content"]
    assert "[Question]\nWhat is {answer_b}?\n" in user  # text inside a value is not substituted again
    assert "[Answer of assistant A]\nI say {answer_b} and {question}\n[End of answer of assistant A]" in user
    assert "[Answer of assistant B]\nsecond\n[End of answer of assistant B]" in user


def test_a_prompt_without_a_system_message_sends_only_the_user_message():
    prompt = PromptSpec(user="Q: {question} / {answer_a} / {answer_b}")
    assert render(prompt, "q", "a", "b") == [{"role": "user", "content": "Q: q / a / b"}]


@pytest.mark.parametrize("text, expected", [
    ("Assistant 1 is clearer.\n1", Verdict("first")),
    ("Both fine.\n\n3\n", Verdict("tie")),
    ("2", Verdict("second")),
    ("Answer: 1", "last line is not 1, 2 or 3: 'Answer: 1'"),
    ("1\nbecause it is short", "last line is not 1, 2 or 3: 'because it is short'"),
    ("4", "last line is not 1, 2 or 3: '4'"),
])
def test_the_papers_three_class_digits(text, expected):
    assert parse_digits(text) == expected


def test_the_parser_follows_the_judges_mode_and_format():
    prompt = {"user": "{question} {answer_a} {answer_b}"}
    assert parser_for(JudgeSpec(endpoint="e", model="m")) is parse_pairwise
    assert parser_for(JudgeSpec(endpoint="e", model="m", verdict_format="digits", prompt=prompt)) is parse_digits
    assert parser_for(JudgeSpec(endpoint="e", model="m", mode="score")) is parse_score
    with pytest.raises(ValueError, match="verdict_format digits needs a prompt that asks for 1, 2 or 3"):
        JudgeSpec(endpoint="e", model="m", verdict_format="digits")
    with pytest.raises(ValueError, match="verdict_format is for mode pairwise"):
        JudgeSpec(endpoint="e", model="m", mode="score", verdict_format="digits", prompt=prompt)
