"""A dialogue written as one text, each turn opened by its speaker's marker: Guanaco's
``### Human: ... ### Assistant: ...``, OIG's ``<human>: ...\\n<bot>: ...``, Anthropic HH's
``\\n\\nHuman: ...\\n\\nAssistant: ...``. Each of those formats is a ``DialogueFormat`` with its
``Markers``, in its own file.

A turn's text is stripped; the user turn carries both markers (``### Human: hi### Assistant: ``)
and the assistant turn the reply alone, so the model learns the reply and its EOS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from qlorafx.data.formats.base import PLACEHOLDER, Conversation, Format, RecordError, Turn, require_text


@dataclass(frozen=True)
class Markers:
    pattern: re.Pattern  # matches one marker; group 1 is the speaker, as ``human`` and ``bot`` name them
    human: str
    bot: str
    human_marker: str  # as rendered: before the user's text
    bot_marker: str  # as rendered: after the user's text, before the reply
    style: str  # the dialogue's name in messages, e.g. "Guanaco's"

    @property
    def form(self) -> str:
        return f"{self.human_marker}...{self.bot_marker}...".strip()

    def turns(self, exchanges: list[tuple[str, str]]) -> Conversation:
        """(human, assistant) pairs -> turns in this text form."""
        turns: Conversation = []
        for human, assistant in exchanges:
            turns += [Turn("user", f"{self.human_marker}{human}{self.bot_marker}"), Turn("assistant", assistant)]
        return turns

    def exchanges(self, text: str, format_name: str) -> list[tuple[str, str]]:
        """The (human, assistant) pairs of a dialogue text, or a RecordError saying what is wrong."""
        parts = self.pattern.split(text)  # ['', 'Human', 'q', 'Assistant', 'a', ...]
        if parts[0].strip() or len(parts) < 5:
            raise RecordError(f"format {format_name!r} needs text of the form {self.form!r}, found {text[:60]!r}")
        speakers, texts = parts[1::2], parts[2::2]
        if speakers != [self.human, self.bot] * (len(speakers) // 2) or len(speakers) % 2:
            raise RecordError(f"format {format_name!r}: {self.human} and {self.bot} must alternate, starting with "
                              f"{self.human}; found {', '.join(speakers)}")
        return [(texts[i].strip(), texts[i + 1].strip()) for i in range(0, len(texts), 2)]

    def prompt_text(self, text: object, column: str) -> str:
        """Inference: a dialogue so far that ends with the human's turn, with the reply's marker and a
        stand-in reply added, as a training record would have it."""
        speakers = self.pattern.findall(text) if isinstance(text, str) else []
        if not speakers or speakers[-1] != self.human:
            raise RecordError(f"a record needs {column!r}: the conversation so far in {self.style} form, "
                              f"'{self.form}{self.human_marker.strip()} ...', ending with a human turn")
        return f"{text.rstrip()}{self.bot_marker}{PLACEHOLDER}"


class DialogueFormat(Format):
    """A format whose record holds one dialogue text: its turns for training, and its prompts, read
    with ``markers``. The text is in ``column``, or in the column the dataset's options name."""

    markers: ClassVar[Markers]
    column: ClassVar[str] = "text"

    def _column(self, options) -> str:
        return getattr(options, "column", None) or self.column

    def conversations(self, record, options=None, counts=None):
        text = require_text(record, self._column(options), self.name)
        return [self.markers.turns(self.markers.exchanges(text, self.name))]

    def prompt(self, text, options=None):
        return self.markers.turns([(text, PLACEHOLDER)])

    def prompt_record(self, record, options=None):
        column = self._column(options)
        return self.one({column: self.markers.prompt_text(record.get(column), column)}, options)
