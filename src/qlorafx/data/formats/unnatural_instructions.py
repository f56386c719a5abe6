"""Unnatural Instructions: a task's ``instances``, each an ``instruction_with_input`` and its ``output``.

Input record (abridged)::

    {"instruction": "Name the color of the object.", "instances": [
         {"instruction_with_input": "Name the color of the object.\\nObject: banana", "input": "banana",
          "output": "Yellow."}],
     "reformulations": [{"instruction_with_input": "What color is a banana?", "output": "Yellow."}]}

gives one conversation per instance, as qlora.py's extractor reads it: the user turn ``Name the color
of the object.\\nObject: banana`` and the assistant turn ``Yellow.`` (followed by EOS), nothing put
between them. ``reformulations: true`` adds one conversation per reformulation too (the field is
optional, and may be null). For inference a prompt text is an ``instruction_with_input``, and a prompt
record either ``{"instruction_with_input": ...}`` or a task with one instance, without ``output``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qlorafx.data.formats.base import PLACEHOLDER, DatasetBase, Format, RecordError, Turn, register, require_list, \
    require_text

PROMPT, RESPONSE = "instruction_with_input", "output"


class UnnaturalInstructionsDataset(DatasetBase):
    format: Literal["unnatural_instructions"] = "unnatural_instructions"
    reformulations: bool = Field(False, description="Also train on each task's reformulations (where it has them).")


@register
class UnnaturalInstructions(Format):
    name = "unnatural_instructions"
    version = "1"
    section = UnnaturalInstructionsDataset

    def conversations(self, record, options=UnnaturalInstructionsDataset(path=""), counts=None):
        instances = list(require_list(record, "instances", self.name))
        if options.reformulations and record.get("reformulations") is not None:
            instances += require_list(record, "reformulations", self.name)
        return [[Turn("user", require_text(instance, PROMPT, self.name)),
                 Turn("assistant", require_text(instance, RESPONSE, self.name))] for instance in instances]

    def prompt(self, text, options=UnnaturalInstructionsDataset(path="")):
        return self.one({"instances": [{PROMPT: text, RESPONSE: PLACEHOLDER}]}, options)

    def prompt_record(self, record, options=UnnaturalInstructionsDataset(path="")):
        if "instances" not in record:
            return self.one({"instances": [{**record, RESPONSE: PLACEHOLDER}]}, options)
        instances = record["instances"]
        if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
            raise RecordError("a task record needs exactly one instance ({'instruction_with_input': ...}) per prompt")
        return self.one({"instances": [{**instances[0], RESPONSE: PLACEHOLDER}]}, options)
