"""A format written for a test, as a user would add one: a section and a Format with both sides."""

from __future__ import annotations

from typing import Literal

from qlorafx.data.formats import PLACEHOLDER, DatasetBase, Format, Turn
from qlorafx.data.formats.base import require_text


class QADataset(DatasetBase):
    format: Literal["qa"] = "qa"


class QA(Format):
    """``{"q": "Why?", "a": "Because."}`` -> the user turn ``Question: Why?\\nAnswer:`` and the
    assistant turn `` Because.``."""

    name = "qa"
    version = "1"
    section = QADataset

    def conversations(self, record, options=None, counts=None):
        question, answer = require_text(record, "q", self.name), require_text(record, "a", self.name)
        return [[Turn("user", f"Question: {question}\nAnswer:"), Turn("assistant", f" {answer}")]]

    def prompt(self, text, options=None):
        return self.one({"q": text, "a": PLACEHOLDER}, options)

    def prompt_record(self, record, options=None):
        return self.one({**record, "a": PLACEHOLDER}, options)
