"""Conversations -> one text and the character spans that carry loss.

Text formats are joined as written, the tokenizer's EOS after each assistant turn. Chat
formats go through a chat template; each assistant span is found by rendering the
conversation up to that turn with and without it, so the span holds exactly the assistant's
text and the end-of-turn marker the template puts after it. The inference prompt is the text
before the last assistant span: by construction the same characters the model saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass

from qlorafx.data.chat_templates import CHAT_TEMPLATES
from qlorafx.data.formats.base import Conversation, RecordError


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: tuple[tuple[int, int], ...]  # assistant turns (with their end marker): these carry loss
    add_special_tokens: bool = True  # False when the template already wrote the BOS token

    @property
    def prompt(self) -> str:
        """What the model is given at inference: everything before the last assistant turn."""
        return self.text[: self.spans[-1][0]] if self.spans else self.text


def render_text(turns: Conversation, eos_token: str) -> Rendered:
    text, spans = "", []
    for turn in turns:
        start = len(text)
        text += turn.text
        if turn.role == "assistant":
            text += eos_token
            spans.append((start, len(text)))
    return Rendered(text, tuple(spans))


def chat_template_of(tokenizer, name: str | None) -> str:
    if name is not None:
        return CHAT_TEMPLATES.get(name)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    raise RecordError(
        f"the tokenizer has no chat template; set chat_template on the dataset to one of {', '.join(CHAT_TEMPLATES.keys())}"
    )


def render_chat(turns: Conversation, tokenizer, template: str) -> Rendered:
    def apply(messages, generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt)

    messages = [{"role": t.role, "content": t.text} for t in turns]
    text = apply(messages, False)
    spans = []
    for i, turn in enumerate(turns):
        if turn.role != "assistant":
            continue
        before, through = apply(messages[:i], True), apply(messages[: i + 1], False)
        if not (through.startswith(before) and text.startswith(through)):
            raise RecordError("the chat template does not render a conversation turn by turn (each turn must extend "
                              "the text before it), so its assistant turns cannot be located; use a named chat_template")
        spans.append((len(before), len(through)))
    bos = tokenizer.bos_token
    return Rendered(text, tuple(spans), add_special_tokens=not (bos and text.startswith(bos)))
