"""LongForm: ``{input, output}``, an instruction and the long text that answers it.

Input record::

    {"input": "Write a haiku about quantization.\\n", "output": "Four bits hold the weight"}

renders as qlora.py trains it: the user turn ``Write a haiku about quantization.\\n`` and the
assistant turn ``Four bits hold the weight`` (followed by EOS), nothing put between them (a template
between them: use format template). For inference a prompt text is the ``input``, and a prompt
record one without ``output``.
"""

from __future__ import annotations

from typing import Literal

from qlorafx.data.formats.base import PLACEHOLDER, DatasetBase, Format, Turn, register, require_text


class LongformDataset(DatasetBase):
    format: Literal["longform"] = "longform"


@register
class Longform(Format):
    name = "longform"
    version = "1"
    section = LongformDataset

    def conversations(self, record, options=None, counts=None):
        return [[Turn("user", require_text(record, "input", self.name)),
                 Turn("assistant", require_text(record, "output", self.name))]]

    def prompt(self, text, options=None):
        return self.one({"input": text, "output": PLACEHOLDER}, options)

    def prompt_record(self, record, options=None):
        return self.one({**record, "output": PLACEHOLDER}, options)
