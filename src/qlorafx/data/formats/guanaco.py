"""Guanaco text: the flattened OpenAssistant form the QLoRA paper trained Guanaco on.

Input record (the ``text`` column; ``column`` names another)::

    {"text": "### Human: What is NF4?### Assistant: A 4-bit data type.### Human: Why?### Assistant: It fits normal weights."}

reads as a conversation: the user turn ``### Human: What is NF4?### Assistant: ``, the assistant
turn ``A 4-bit data type.``, and so on; every assistant turn carries loss (with its EOS).
The oasst format renders its trees in this same form. For inference a prompt text is one human
turn, and a prompt record the conversation so far, ending with a human turn.
"""

from __future__ import annotations

import re
from typing import Literal

from qlorafx.data.formats.base import PLACEHOLDER, Conversation, DatasetBase, Format, RecordError, Turn, register, require_text

HUMAN, ASSISTANT = "### Human: ", "### Assistant: "
MARKER = re.compile(r"### (Human|Assistant):\s?")


def guanaco_turns(exchanges: list[tuple[str, str]]) -> Conversation:
    """(human, assistant) pairs -> turns in Guanaco's text form."""
    turns: Conversation = []
    for human, assistant in exchanges:
        turns += [Turn("user", f"{HUMAN}{human}{ASSISTANT}"), Turn("assistant", assistant)]
    return turns


class GuanacoDataset(DatasetBase):
    format: Literal["guanaco"] = "guanaco"
    column: str = "text"


@register
class Guanaco(Format):
    name = "guanaco"
    version = "1"
    section = GuanacoDataset

    def conversations(self, record, options=GuanacoDataset(path=""), counts=None):
        text = require_text(record, options.column, self.name)
        parts = MARKER.split(text)  # ['', 'Human', 'q', 'Assistant', 'a', ...]
        if parts[0].strip() or len(parts) < 5:
            raise RecordError(f"format {self.name!r} needs text of the form '### Human: ...### Assistant: ...', "
                              f"found {text[:60]!r}")
        speakers, texts = parts[1::2], parts[2::2]
        if speakers != ["Human", "Assistant"] * (len(speakers) // 2) or len(speakers) % 2:
            raise RecordError(f"format {self.name!r}: Human and Assistant must alternate, starting with Human; "
                              f"found {', '.join(speakers)}")
        return [guanaco_turns([(texts[i].strip(), texts[i + 1].strip()) for i in range(0, len(texts), 2)])]

    def prompt(self, text, options=None):
        return guanaco_turns([(text, PLACEHOLDER)])

    def prompt_record(self, record, options=GuanacoDataset(path="")):
        column = options.column
        text = record.get(column)
        speakers = MARKER.findall(text) if isinstance(text, str) else []
        if not speakers or speakers[-1] != "Human":
            raise RecordError(f"a record needs {column!r}: the conversation so far in Guanaco's form, "
                              f"'### Human: ...### Assistant: ...### Human: ...', ending with a human turn")
        return self.one({column: f"{text.rstrip()}{ASSISTANT}{PLACEHOLDER}"}, options)
