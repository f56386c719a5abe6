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

from qlorafx.data.formats.base import DatasetBase, register
from qlorafx.data.formats.dialogue import DialogueFormat, Markers

GUANACO = Markers(re.compile(r"### (Human|Assistant):\s?"), "Human", "Assistant", "### Human: ", "### Assistant: ",
                  "Guanaco's")


class GuanacoDataset(DatasetBase):
    format: Literal["guanaco"] = "guanaco"
    column: str = "text"


@register
class Guanaco(DialogueFormat):
    name = "guanaco"
    version = "1"
    section = GuanacoDataset
    markers = GUANACO
