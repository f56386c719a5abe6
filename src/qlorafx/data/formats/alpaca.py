"""Alpaca: ``{instruction, input, output}`` with the QLoRA paper's two prompt templates.

Input record::

    {"instruction": "Name a primary color.", "input": "", "output": "Red."}

renders to a user turn (the template without input, as ``input`` is empty)::

    Below is an instruction that describes a task. Write a response that appropriately
    completes the request.

    ### Instruction:
    Name a primary color.

    ### Response: 

and an assistant turn ``Red.`` (followed by EOS when tokenized). A non-empty ``input`` selects
the template with an ``### Input:`` block. ``columns`` maps these names to a dataset's own,
e.g. ``columns: {instruction: question, output: answer}``. For inference a prompt text is the
instruction (with no input), and a prompt record is one without ``output``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qlorafx.data.formats.base import PLACEHOLDER, DatasetBase, Format, Turn, register, require_text

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response: "
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response: "
)


class AlpacaDataset(DatasetBase):
    format: Literal["alpaca"] = "alpaca"
    columns: dict[Literal["instruction", "input", "output"], str] = Field(
        default_factory=dict, description="Dataset column for each Alpaca field, where the names differ."
    )


@register
class Alpaca(Format):
    name = "alpaca"
    version = "1"
    section = AlpacaDataset

    def conversations(self, record, options=AlpacaDataset(path=""), counts=None):
        column = _columns(options)
        instruction = require_text(record, column["instruction"], self.name)
        context = require_text(record, column["input"], self.name, optional=True)
        prompt = (PROMPT_WITH_INPUT.format(instruction=instruction, input=context) if context
                  else PROMPT_NO_INPUT.format(instruction=instruction))
        return [[Turn("user", prompt), Turn("assistant", require_text(record, column["output"], self.name))]]

    def prompt(self, text, options=AlpacaDataset(path="")):
        column = _columns(options)
        return self.one({column["instruction"]: text, column["input"]: "", column["output"]: PLACEHOLDER}, options)

    def prompt_record(self, record, options=AlpacaDataset(path="")):
        return self.one({**record, _columns(options)["output"]: PLACEHOLDER}, options)


def _columns(options: AlpacaDataset) -> dict[str, str]:
    return {"instruction": "instruction", "input": "input", "output": "output", **options.columns}
