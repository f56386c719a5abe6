"""Prompts -> the token ids a finished run's model is given, and generated ids -> text; no model.

    a prompt text, a record, or OpenAI messages
    -> conversation / from_messages (turns built by the run's format: Format.prompt, .prompt_record,
       .system; no tokenizer)
    -> Prompter.encode (rendered and tokenized by the training code itself) -> Encoded
    ... the model writes new ids ...
    -> Prompter.decode (up to EOS or the chat template's end of turn) -> text

The prompt ids are the training example's ``prompt_ids``, not the rendered prompt tokenized on its
own: the conversation is rendered with a stand-in response (``PLACEHOLDER``), tokenized as a
training example (the same render and tokenize functions), and cut before the first token of the
response. With a byte-level or SentencePiece BPE tokenizer the two can differ: the Alpaca prompt
ends in a space (``### Response: ``) that training tokenized into the response's first token
(`` Red``), so the prompt tokenized alone would end in a lone space token the model never saw there.

Nothing here names a format: every format renders its own prompts, so a registered format is
prompted by generate, chat and the server with no edit here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlorafx.data.formats import FORMATS, PLACEHOLDER, Conversation, DatasetBase, RecordError, Turn
from qlorafx.errors import UserError

NO_LIMIT = 1 << 62  # max_length for tokenizing a prompt: generation never truncates it


class GenerateError(UserError):
    """A run, prompt or option that generate or chat cannot use; the message says what to do."""


def _prompt_error(dataset: DatasetBase, err: Exception) -> GenerateError:
    return GenerateError(f"prompt for a {dataset.format!r} run: {err}")


# ---------------------------------------------------------------------------------------------
# Prompts -> conversations ending in a stand-in assistant turn (no tokenizer).


def _exchange(dataset: DatasetBase, prompt: str | dict) -> Conversation:
    """One prompt (a text, {"prompt": TEXT}, or a record of the run's format without its response)."""
    fmt = FORMATS.get(dataset.format)
    if isinstance(prompt, dict) and set(prompt) == {"prompt"} and isinstance(prompt["prompt"], str):
        prompt = prompt["prompt"]
    if not isinstance(prompt, (str, dict)):
        raise GenerateError(f"prompt for a {dataset.format!r} run: expected a text or a JSON object, "
                            f"found {type(prompt).__name__}")
    try:
        return fmt.prompt(prompt, dataset) if isinstance(prompt, str) else fmt.prompt_record(prompt, dataset)
    except RecordError as err:
        raise _prompt_error(dataset, err) from None


def conversation(dataset: DatasetBase, prompt: str | dict, history: list = (), system: str | None = None) -> Conversation:
    """The turns the model is given: ``system`` (where the format has a system turn), each earlier
    (prompt, answer) exchange in the run's format with its answer as the assistant turn, then
    ``prompt`` with a stand-in assistant turn."""
    turns: Conversation = []
    if system is not None:
        try:
            turns += FORMATS.get(dataset.format).system(system, dataset)
        except RecordError as err:
            raise GenerateError(str(err)) from None
    for earlier, answer in history:
        done = _exchange(dataset, earlier)
        turns += [*done[:-1], Turn("assistant", answer)]
    return [*turns, *_exchange(dataset, prompt)]


ROLES = ("system", "user", "assistant")


def message_texts(messages: Any) -> list[tuple[str, str]]:
    """OpenAI chat messages -> (role, text) for each, or a GenerateError naming the message and what
    was expected. ``content`` is a string or a list of {"type": "text", "text": ...} parts (joined)."""
    if not isinstance(messages, list) or not messages:
        raise GenerateError("'messages' must be a non-empty list of {role, content} objects")
    found = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise GenerateError(f"{where} must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise GenerateError(f"{where}.role is {role!r}; expected one of {', '.join(ROLES)}")
        found.append((role, _content_text(message.get("content"), where)))
    if found[-1][0] != "user":
        raise GenerateError(f"the last message is the {found[-1][0]}'s; it must be the user's, which the model answers")
    return found


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part_index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise GenerateError(f"{where}.content[{part_index}] is a {kind!r} part; only text parts "
                                    f"({{'type': 'text', 'text': ...}}) can be rendered")
            texts.append(part["text"])
        return "".join(texts)
    raise GenerateError(f"{where}.content must be a string or a list of text parts, found {type(content).__name__}")


def split_messages(messages: Any) -> tuple[str | None, list[tuple[str, str]], str]:
    """OpenAI chat messages -> (system, [(user, assistant), ...], the last user message).

    ``messages`` is ``[{"role": "system"|"user"|"assistant", "content": TEXT}, ...]``: an optional
    system message first, then user and assistant alternating, ending with the user's message
    (the one the model answers)."""
    texts = message_texts(messages)
    system = texts[0][1] if texts[0][0] == "system" else None
    pending, history = None, []
    for index, (role, text) in enumerate(texts[system is not None:], start=system is not None):
        expected = "user" if pending is None else "assistant"
        if role != expected:
            raise GenerateError(f"messages[{index}] is a {role} message where the {expected}'s was expected: after an "
                                f"optional system message, user and assistant alternate")
        if role == "user":
            pending = text
        else:
            history.append((pending, text))
            pending = None
    return system, history, pending


def from_messages(dataset: DatasetBase, messages: Any) -> Conversation:
    """OpenAI chat messages -> the turns the model is given, rendered as the run trained (see
    split_messages for the shape). A format with no system turn refuses a system message."""
    system, history, prompt = split_messages(messages)
    if history and not FORMATS.get(dataset.format).dialogue:
        raise GenerateError(f"a {dataset.format!r} run trained on plain text with no turns: give one user message, "
                            f"the text to continue")
    return conversation(dataset, prompt, history, system)


def read_prompts(path: str | Path) -> list[str | dict]:
    """A JSONL file of prompts: each line a JSON string (the prompt text), {"prompt": TEXT}, or a
    record of the run's format without its response (alpaca: {"instruction", "input"})."""
    path = Path(path)
    if not path.is_file():
        raise GenerateError(f"--file {path}: no such file; give a JSONL file, one prompt per line")
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise GenerateError(f"{path}:{number}: not JSON ({err.msg}): {line[:60]!r}; each line is a JSON string "
                                f"(the prompt) or object (a record of the run's format)") from None
        if not isinstance(item, (str, dict)):
            raise GenerateError(f"{path}:{number}: expected a JSON string or object, found {type(item).__name__}")
        prompts.append(item)
    if not prompts:
        raise GenerateError(f"{path} holds no prompt; write one JSON string or object per line")
    return prompts


# ---------------------------------------------------------------------------------------------
# Conversations -> token ids, by the training code; generated ids -> text.


@dataclass(frozen=True)
class Encoded:
    ids: list[int]  # what the model is given: the training example's prompt_ids
    text: str  # the rendered prompt (Rendered.prompt): everything before the assistant turn
    # The end of ``text`` that training tokenized into the response's first token (e.g. the
    # space of '### Response: '): the model writes it again, so it is taken off the output.
    carried: str = ""


class Prompter:
    """Renders and tokenizes conversations exactly as a run's training data was: needs the run's
    first dataset (its format and options), its tokenizer, and whether the model is encoder-decoder."""

    def __init__(self, run, tokenizer):
        from qlorafx.data.render import chat_template_of

        self.dataset, self.tokenizer = run.dataset, tokenizer
        self.encoder_decoder = run.encoder_decoder
        self.chat = FORMATS.get(self.dataset.format).chat
        try:
            self.template = chat_template_of(tokenizer, getattr(self.dataset, "chat_template", None)) if self.chat else None
        except RecordError as err:
            raise GenerateError(str(err)) from None
        self.end_marker = self._end_marker()
        vocab = tokenizer.get_vocab()
        self.stop_ids = list(dict.fromkeys(
            [tokenizer.eos_token_id] + ([vocab[self.end_marker]] if self.end_marker in vocab else [])))

    def render(self, turns):
        from qlorafx.data.render import render_chat, render_text

        try:
            return render_chat(turns, self.tokenizer, self.template) if self.chat else \
                render_text(turns, self.tokenizer.eos_token)
        except RecordError as err:
            raise GenerateError(str(err)) from None

    def _end_marker(self) -> str:
        """What ends an assistant turn: the tokenizer's EOS for text formats, the chat template's
        end-of-turn text (e.g. <|im_end|>) for chat."""
        if not self.chat:
            return self.tokenizer.eos_token
        rendered = self.render([Turn("user", "x"), Turn("assistant", PLACEHOLDER)])
        start, end = rendered.spans[-1]
        return rendered.text[start:end].removeprefix(PLACEHOLDER).strip() or self.tokenizer.eos_token

    def encode(self, turns: Conversation) -> Encoded:
        from qlorafx.data.render import Rendered
        from qlorafx.data.tokenize import tokenize, tokenize_encoder_decoder

        rendered = self.render(turns)
        last = Rendered(rendered.text, rendered.spans[-1:], rendered.add_special_tokens)  # earlier answers are context
        if self.encoder_decoder:  # the encoder reads the whole prompt; nothing of it is carried into the answer
            return Encoded(tokenize_encoder_decoder(last, self.tokenizer, NO_LIMIT)[0].prompt_ids, last.prompt)
        ids = tokenize(last, self.tokenizer, NO_LIMIT, train_on_inputs=False).prompt_ids
        if not ids:
            raise GenerateError("the prompt renders to no tokens; give a non-empty prompt")
        offsets = self.tokenizer(rendered.text, return_offsets_mapping=True,
                                 add_special_tokens=rendered.add_special_tokens)["offset_mapping"][:len(ids)]
        covered = max((end for _, end in offsets), default=0)
        return Encoded(ids, last.prompt, last.prompt[covered:])

    def encode_messages(self, messages: list[dict]) -> Encoded:
        """OpenAI chat messages -> the prompt ids the run trained with (see from_messages)."""
        return self.encode(from_messages(self.dataset, messages))

    def decode(self, new_ids: list[int], encoded: Encoded) -> str:
        """Generated ids -> the answer: up to the first stop token or end marker."""
        stops = [i for i, token in enumerate(new_ids) if token in self.stop_ids]
        text = self.tokenizer.decode(new_ids[:stops[0]] if stops else new_ids, skip_special_tokens=True)
        if self.end_marker and self.end_marker in text:
            text = text[:text.index(self.end_marker)]
        return text.removeprefix(encoded.carried)
