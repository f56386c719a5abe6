"""What a served model is given and what it answers, in text: OpenAI-style messages or a prompt ->
prompt ids, and generated ids -> the answer (whole, or the part that is safe to stream so far).

An adapter renders with its run's own format and template (``Prompter`` and ``conversation``: the
tokens of training's prompt, as ``qlorafx generate`` and ``qlorafx chat`` give them). The base has
no run and no format: a prompt is continued as plain text, and messages are rendered with the
tokenizer's own chat template where it has one.
"""

from __future__ import annotations

from typing import Any

from qlorafx.data.formats import FORMATS
from qlorafx.infer.prompt import Encoded, GenerateError, Prompter, conversation, message_texts


class AdapterRenderer:
    """A run's adapter: prompts and chats rendered exactly as the run trained."""

    def __init__(self, run, tokenizer):
        self.run, self.tokenizer = run, tokenizer
        self.prompter = Prompter(run, tokenizer)
        self.stop_ids = list(self.prompter.stop_ids)
        self.end_marker = self.prompter.end_marker

    def encode_prompt(self, prompt: str) -> Encoded:
        """As ``qlorafx generate --prompt``: the text as the user turn of the run's format."""
        return self.prompter.encode(conversation(self.run.dataset, prompt))

    def encode_chat(self, messages: Any) -> Encoded:
        """As the run trained: the format renders the system message, the history and the last message."""
        fmt = self.run.dataset.format
        if not FORMATS.get(fmt).dialogue:
            raise GenerateError(f"the run {self.run.path.name} trained on format {fmt!r} (plain text, no turns), "
                                f"so there is no chat to render; use /v1/completions to continue a text")
        return self.prompter.encode_messages(messages)

    def decode(self, ids: list[int], encoded: Encoded) -> str:
        return self.prompter.decode(ids, encoded)

    def raw(self, ids: list[int]) -> str:
        """The text of ``ids`` before the answer's cuts (carried prefix, end marker)."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)


class BaseRenderer:
    """The base model alone: a prompt continued as plain text; messages through the tokenizer's
    chat template, when it has one."""

    def __init__(self, tokenizer, name: str):
        self.tokenizer, self.name = tokenizer, name
        self.stop_ids = [tokenizer.eos_token_id]
        self.end_marker = ""

    def encode_prompt(self, prompt: str) -> Encoded:
        ids = self.tokenizer(prompt)["input_ids"]
        if not ids:
            raise GenerateError("the prompt renders to no tokens; give a non-empty prompt")
        return Encoded(ids, prompt)

    def encode_chat(self, messages: Any) -> Encoded:
        texts = message_texts(messages)
        if not getattr(self.tokenizer, "chat_template", None):
            raise GenerateError(f"the base model {self.name} has no chat template, so it has no chat to render; "
                                f"use /v1/completions for the base, or name an adapter as the model")
        chat = [{"role": role, "content": text} for role, text in texts]
        try:
            text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        except Exception as err:  # a jinja template refusing these messages (e.g. roles out of order)
            raise GenerateError(f"the base model's chat template refused these messages: {err}") from None
        return Encoded(self.tokenizer(text, add_special_tokens=False)["input_ids"], text)

    def decode(self, ids: list[int], encoded: Encoded) -> str:
        stops = [i for i, token in enumerate(ids) if token in self.stop_ids]
        return self.tokenizer.decode(ids[:stops[0]] if stops else ids, skip_special_tokens=True)

    def raw(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def visible_text(renderer, ids: list[int], encoded: Encoded, stop: tuple[str, ...] = ()) -> tuple[str, bool]:
    """(the answer so far that no later token can change, whether a stop string or end marker has
    been reached). Held back: a trailing incomplete UTF-8 character, an end of text that may be the
    start of the end marker or of a stop string, and anything while the tokens so far only spell
    the part of the prompt that training carried into the answer (e.g. its space)."""
    text = renderer.decode(ids, encoded)
    cut = [text.index(s) for s in stop if s and s in text]
    raw = renderer.raw(ids)
    marker = renderer.end_marker
    ended = bool(cut) or bool(marker and marker in raw)
    if cut:
        return text[:min(cut)], True
    if ended:
        return text, True
    carried = encoded.carried
    if carried and len(raw) < len(carried) and carried.startswith(raw):
        return "", False
    text = text.rstrip("\ufffd")
    for pattern in (marker, *stop):
        for size in range(min(len(pattern) - 1, len(text)), 0, -1):
            if text.endswith(pattern[:size]):
                text = text[:-size]
                break
    return text, False
