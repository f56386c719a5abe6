"""Chat conversations, ShareGPT or OpenAI style, rendered by a chat template.

ShareGPT (``from``: system / human / gpt) and OpenAI (``role``: system / user / assistant)::

    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}

both read as the user turn ``Hi`` and the assistant turn ``Hello!``. Rendering uses the
tokenizer's chat template, or ``chat_template`` (a named template, e.g. chatml) when the
tokenizer has none; with chatml this becomes
``<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>\\n``, where the
assistant's text and its ``<|im_end|>`` carry loss. For inference a prompt text is one user
message, a prompt record either list ending with the user's message, and a system message a
system turn.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qlorafx.data.chat_templates import CHAT_TEMPLATES
from qlorafx.data.formats.base import PLACEHOLDER, DatasetBase, Format, RecordError, Turn, check_alternation, register, require_text
from qlorafx.registry import registry_key

SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
OPENAI_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}


class ChatDataset(DatasetBase):
    format: Literal["chat"] = "chat"
    chat_template: registry_key(CHAT_TEMPLATES) | None = Field(
        None, description="Named template (e.g. chatml); default: the tokenizer's own.")


@register
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

    def prompt(self, text, options=None):
        return [Turn("user", text), Turn("assistant", PLACEHOLDER)]

    def prompt_record(self, record, options=None):
        for key, role_key, text_key, user, assistant in (("messages", "role", "content", ("user",), "assistant"),
                                                         ("conversations", "from", "value", ("human", "user"), "gpt")):
            messages = record.get(key)
            if isinstance(messages, list):
                if not messages or not isinstance(messages[-1], dict) or messages[-1].get(role_key) not in user:
                    raise RecordError(f"the last of the {key!r} must be the user's message, which the model answers")
                return self.one({key: [*messages, {role_key: assistant, text_key: PLACEHOLDER}]}, options)
        raise RecordError("a chat record needs a 'messages' (OpenAI) or 'conversations' (ShareGPT) list ending with "
                          "the user's message")

    def system(self, text, options=None):
        return [Turn("system", text)]
