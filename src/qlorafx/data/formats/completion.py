"""Completion: raw text, every token trained (continued pre-training, domain text).

Input record (the ``text`` column; ``column`` names another)::

    {"text": "NF4 is an information-theoretically optimal data type for normal weights."}

renders to one assistant turn holding the whole text (followed by EOS), so every token
carries loss, whatever ``train_on_inputs`` says. For inference a prompt (a text, or a record's
``column``) is the start of a text to continue; there are no turns to chat in.
"""

from __future__ import annotations

from typing import Literal

from qlorafx.data.formats.base import PLACEHOLDER, DatasetBase, Format, RecordError, Turn, register, require_text


class CompletionDataset(DatasetBase):
    format: Literal["completion"] = "completion"
    column: str = "text"


@register
class Completion(Format):
    name = "completion"
    version = "1"
    dialogue = False
    section = CompletionDataset

    def conversations(self, record, options=CompletionDataset(path=""), counts=None):
        return [[Turn("assistant", require_text(record, options.column, self.name))]]

    def prompt(self, text, options=None):
        return [Turn("user", text), Turn("assistant", PLACEHOLDER)]  # rendered, the prompt is the text itself

    def prompt_record(self, record, options=CompletionDataset(path="")):
        text = record.get(options.column)
        if not isinstance(text, str):
            raise RecordError(f"a record needs the text to continue in {options.column!r}")
        return self.prompt(text, options)
