"""Self-Instruct, in both shapes the project publishes.

Finetuning rows ``{prompt, completion}`` (a trailing ``<|endoftext|>`` is stripped: the
tokenizer's own EOS follows every response)::

    {"prompt": "Is this review positive?\\nGreat phone!\\nAnswer:", "completion": " Yes<|endoftext|>"}

renders to the user turn ``Is this review positive?\\nGreat phone!\\nAnswer:`` and the assistant
turn `` Yes``. Task rows ``{instruction, instances: [{input, output}, ...]}`` (the seed tasks)
give one example per instance, in Self-Instruct's own encoding::

    {"instruction": "Give a synonym.", "instances": [{"input": "happy", "output": "glad"}]}

renders to the user turn ``Give a synonym.\\nInput: happy\\nOutput:`` and the assistant turn
`` glad`` (an instance without input: ``Give a synonym.\\nOutput:``). For inference a prompt text is
the ``prompt``, and a prompt record either shape without its response (a task with one instance).
"""

from __future__ import annotations

from typing import Literal

from qlorafx.data.formats.base import PLACEHOLDER, DatasetBase, Format, RecordError, Turn, register, require_list, require_text

END_OF_TEXT = "<|endoftext|>"


class SelfInstructDataset(DatasetBase):
    format: Literal["self_instruct"] = "self_instruct"


@register
class SelfInstruct(Format):
    name = "self_instruct"
    version = "1"
    section = SelfInstructDataset

    def conversations(self, record, options=None, counts=None):
        if isinstance(record, dict) and "instances" in record:
            return self._task(record)
        if isinstance(record, dict) and "prompt" in record:
            completion = require_text(record, "completion", self.name).removesuffix(END_OF_TEXT)
            return [[Turn("user", require_text(record, "prompt", self.name)), Turn("assistant", completion)]]
        found = ", ".join(sorted(map(str, record))) if isinstance(record, dict) else type(record).__name__
        raise RecordError(f"format {self.name!r} needs {{prompt, completion}} or {{instruction, instances}}; "
                          f"the record has {found}")

    def _task(self, record):
        instruction = require_text(record, "instruction", self.name).strip()
        conversations = []
        for instance in require_list(record, "instances", self.name):
            context = require_text(instance, "input", self.name, optional=True).strip()
            prompt = f"{instruction}\nInput: {context}\nOutput:" if context else f"{instruction}\nOutput:"
            output = require_text(instance, "output", self.name).strip()
            conversations.append([Turn("user", prompt), Turn("assistant", " " + output)])
        return conversations

    def prompt(self, text, options=None):
        return self.one({"prompt": text, "completion": PLACEHOLDER}, options)

    def prompt_record(self, record, options=None):
        if "instances" in record:
            instances = record["instances"]
            if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
                raise RecordError("a task record needs exactly one instance ({'input': ...}) per prompt")
            return self.one({**record, "instances": [{**instances[0], "output": PLACEHOLDER}]}, options)
        return self.one({**record, "completion": PLACEHOLDER}, options)
