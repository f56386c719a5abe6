"""Chat conversations, ShareGPT or OpenAI style, rendered by a chat template.

ShareGPT (``from``: system / human / gpt) and OpenAI (``role``: system / user / assistant)::

    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}

both read as the user turn ``Hi`` and the assistant turn ``Hello!``. Rendering uses the
tokenizer's chat template, or ``chat_template`` (a named template, e.g. chatml) when the
tokenizer has none; with chatml this becomes
``<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>\\n``, where the
assistant's text and its ``<|im_end|>`` carry loss.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from qlorafx.data.chat_templates import CHAT_TEMPLATES
from qlorafx.data.formats.base import DatasetBase, Format, RecordError, Turn, check_alternation, require_text

SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
OPENAI_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}


class ChatDataset(DatasetBase):
    format: Literal["chat"] = "chat"
    chat_template: str | None = Field(None, description="Named template (e.g. chatml); default: the tokenizer's own.")

    @field_validator("chat_template")
    @classmethod
    def _known(cls, v):
        if v is not None and v not in CHAT_TEMPLATES:
            from qlorafx.registry import UnknownKeyError

            raise ValueError(str(UnknownKeyError(CHAT_TEMPLATES.kind, v, CHAT_TEMPLATES.keys())))
        return v


class Chat(Format):
    name = "chat"
    version = "1"
    chat = True
    section = ChatDataset

    def conversations(self, record, options=None, counts=None):
        if isinstance(record, dict) and isinstance(record.get("conversations"), list):
            messages, role_key, text_key, roles = record["conversations"], "from", "value", SHAREGPT_ROLES
        elif isinstance(record, dict) and isinstance(record.get("messages"), list):
            messages, role_key, text_key, roles = record["messages"], "role", "content", OPENAI_ROLES
        else:
            found = ", ".join(map(str, record)) if isinstance(record, dict) else type(record).__name__
            raise RecordError(f"format {self.name!r} needs a 'conversations' (ShareGPT) or 'messages' (OpenAI) list; "
                              f"the record has {found}")
        turns = []
        for message in messages:
            role = require_text(message, role_key, self.name)
            if role not in roles:
                raise RecordError(f"format {self.name!r}: unknown {role_key} {role!r}; expected one of {', '.join(roles)}")
            turns.append(Turn(roles[role], require_text(message, text_key, self.name)))
        check_alternation(turns, self.name)
        return [turns]
