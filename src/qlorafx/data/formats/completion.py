"""Completion: raw text, every token trained (continued pre-training, domain text).

Input record (the ``text`` column; ``column`` names another)::

    {"text": "NF4 is an information-theoretically optimal data type for normal weights."}

renders to one assistant turn holding the whole text (followed by EOS), so every token
carries loss, whatever ``train_on_inputs`` says.
"""

from __future__ import annotations

from typing import Literal

from qlorafx.data.formats.base import DatasetBase, Format, Turn, require_text


class CompletionDataset(DatasetBase):
    format: Literal["completion"] = "completion"
    column: str = "text"


class Completion(Format):
    name = "completion"
    version = "1"
    section = CompletionDataset

    def conversations(self, record, options=CompletionDataset(path=""), counts=None):
        return [[Turn("assistant", require_text(record, options.column, self.name))]]
