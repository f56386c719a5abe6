"""Anthropic HH-RLHF: two dialogues per record, ``chosen`` and ``rejected``; training follows ``chosen``.

Input record::

    {"chosen": "\\n\\nHuman: What is NF4?\\n\\nAssistant: A 4-bit data type.\\n\\nHuman: Why?\\n\\nAssistant: It fits.",
     "rejected": "\\n\\nHuman: What is NF4?\\n\\nAssistant: No idea.\\n\\nHuman: Why?\\n\\nAssistant: Why not."}

reads as the chosen conversation: the user turn ``\\n\\nHuman: What is NF4?\\n\\nAssistant: ``, the
assistant turn ``A 4-bit data type.``, the user turn ``\\n\\nHuman: Why?\\n\\nAssistant: `` and the
assistant turn ``It fits.``; the assistant turns carry loss (qlora.py trained on the whole chosen
text, the human's turns included). ``rejected`` is not used. A dialogue with an empty reply (HH's
chosen texts sometimes end ``Assistant:`` with nothing after it) is left out and counted in the data
report, as oasst counts the messages it filters: trained, it would be a bare stop token right after
the human's turn, teaching the model to answer nothing; refused, the published data could not be used. For inference a prompt text is one
human turn, and a prompt record ``{"chosen": ...}`` the dialogue so far, ending with a human turn.
"""

from __future__ import annotations

import re
from typing import Literal

from qlorafx.data.formats.base import DatasetBase, register
from qlorafx.data.formats.dialogue import DialogueFormat, Markers


class HhRlhfDataset(DatasetBase):
    format: Literal["hh_rlhf"] = "hh_rlhf"


@register
class HhRlhf(DialogueFormat):
    name = "hh_rlhf"
    version = "2"  # 2: a dialogue with an empty reply is left out
    section = HhRlhfDataset
    column = "chosen"
    EMPTY_REPLY = "dialogues with an empty assistant reply"

    def conversations(self, record, options=None, counts=None):
        [turns] = super().conversations(record, options, counts)
        if any(t.role == "assistant" and not t.text for t in turns):  # the markers' turns are stripped
            if counts is not None:
                counts[self.EMPTY_REPLY] += 1
            return []
        return [turns]

    markers = Markers(re.compile(r"(?:\A\s*|\n\n)(Human|Assistant):[ \t]?"), "Human", "Assistant", "\n\nHuman: ",
                      "\n\nAssistant: ", "Anthropic HH's")
