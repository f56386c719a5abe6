"""Multiple-choice accuracy in the style of qlora.py's MMLU check: the answer letters' logits.

A record ``{"question": "2+2?", "choices": ["3", "4"], "answer": 1}`` (answer: index or letter)
becomes the prompt::

    2+2?
    A. 3
    B. 4
    Answer:

and counts as right when, at the last position, the logit of the right letter is the highest
among the choices' letters. An encoder-decoder model reads the prompt with its encoder, and its
decoder's first position (after the start token) is the one scored.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from qlorafx.errors import UserError
from qlorafx.model.architecture import is_encoder_decoder

LETTERS = string.ascii_uppercase


class ChoiceFileError(UserError):
    """A multiple-choice file or record that cannot be scored; says where and what is expected."""


def read_questions(path: Path) -> list[tuple[str, int, int]]:
    """(prompt, number of choices, index of the answer) per record."""
    if not path.is_file():
        raise ChoiceFileError(f"{path}: file not found; give a JSONL of {{question, choices, answer}}")
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            question, choices, answer = record["question"], record["choices"], record["answer"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ChoiceFileError(f"{path}:{number}: expected {{question, choices, answer}} ({err})") from None
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
            raise ChoiceFileError(f"{path}:{number}: choices must be a list of 2 to {len(LETTERS)} answers")
        index = LETTERS.index(answer) if isinstance(answer, str) and answer in LETTERS else answer
        if not isinstance(index, int) or not 0 <= index < len(choices):
            raise ChoiceFileError(f"{path}:{number}: answer {answer!r} is not a choice's index or letter")
        lines = [str(question), *(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)), "Answer:"]
        questions.append(("\n".join(lines), len(choices), index))
    if not questions:
        raise ChoiceFileError(f"{path}: holds no questions")
    return questions


def letter_ids(tokenizer, count: int) -> list[int]:
    """The token each letter starts with when it follows 'Answer:' (as qlora.py takes them)."""
    return [tokenizer(f" {letter}", add_special_tokens=False)["input_ids"][-1] for letter in LETTERS[:count]]


def accuracy(model, tokenizer, questions: list[tuple[str, int, int]]) -> dict[str, float]:
    import torch

    right = 0
    with torch.no_grad():
        for prompt, count, answer in questions:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(model.device)
            if is_encoder_decoder(model.config):
                start = torch.tensor([[model.config.decoder_start_token_id]], device=model.device)
                last = model(input_ids=ids, decoder_input_ids=start).logits[0, -1]
            else:
                last = model(input_ids=ids).logits[0, -1]
            right += int(last[letter_ids(tokenizer, count)].argmax().item() == answer)
    return {"mc_accuracy": right / len(questions), "mc_questions": len(questions)}
