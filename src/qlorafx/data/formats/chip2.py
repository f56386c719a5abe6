"""OIG unified_chip2: a dialogue in one ``text``, turns opened by ``<human>:`` and ``<bot>:``.

Input record (the ``text`` column; ``column`` names another)::

    {"text": "<human>: What is NF4?\\n<bot>: A 4-bit data type.\\n<human>: Why?\\n<bot>: It fits normal weights."}

reads as a conversation: the user turn ``<human>: What is NF4?\\n<bot>: ``, the assistant turn
``A 4-bit data type.``, the user turn ``<human>: Why?\\n<bot>: `` and the assistant turn ``It fits
normal weights.``; every assistant turn carries loss (with its EOS). qlora.py kept only the first
exchange, without the markers; this keeps every turn, in the dataset's own form. For inference a
prompt text is one human turn, and a prompt record the conversation so far, ending with a human turn.
"""

from __future__ import annotations

import re
from typing import Literal

from qlorafx.data.formats.base import DatasetBase, register
from qlorafx.data.formats.dialogue import DialogueFormat, Markers


class Chip2Dataset(DatasetBase):
    format: Literal["chip2"] = "chip2"
    column: str = "text"


@register
class Chip2(DialogueFormat):
    name = "chip2"
    version = "1"
    section = Chip2Dataset
    markers = Markers(re.compile(r"\n?<(human|bot)>:\s?"), "human", "bot", "<human>: ", "\n<bot>: ", "OIG's")
