"""A multi-turn chat with a finished run: the history, the run's template, and their limits; no model.

    session = ChatSession(prompter, max_new_tokens, context_length)  # or ChatSession.of(generator)
    prompt = session.prompt("What is NF4?")   # history + message -> Encoded, oldest exchanges dropped to fit
    answer = <the model's answer to prompt.encoded.ids>
    session.add(prompt.message, answer)       # the exchange joins the history
    session.reset()                           # an empty history (the system message stays)

A server given a whole conversation per request (OpenAI ``messages``) loads it into a fresh session:
``message = session.load(messages)`` sets the system message and history, then ``session.prompt(message)``.

The history is kept as (message, answer) pairs and rendered by the run's format on every prompt, so it
reads exactly as a training conversation: a chat run through its chat template, a guanaco/oasst run as
'### Human: ...### Assistant: ...' turns, and the other text formats (alpaca, self_instruct, template)
apply their template to every user message and join the exchanges as training joins turns (the
tokenizer's EOS after each answer). When the history no longer fits the model's positions with room
for an answer, the oldest exchanges are dropped; an encoder-decoder (T5) writes its answer with the
decoder, so only the history must fit its encoder. A run with no turns (format completion) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from qlorafx.data.formats import FORMATS
from qlorafx.infer.prompt import Encoded, GenerateError, Prompter, conversation, split_messages


def check_chattable(run) -> None:
    """Refuses, from the run's files alone, a run whose format has no turns or cannot render a message."""
    dataset = run.dataset
    if not FORMATS.get(dataset.format).dialogue:
        raise GenerateError(f"{run.path} trained on format {dataset.format!r} (plain text, no turns), so there is "
                            f"nothing to chat in; use qlorafx generate {run.path} --prompt TEXT to continue a text")
    conversation(dataset, "hello")  # e.g. a template whose prompt names two fields cannot take a message


@dataclass(frozen=True)
class Prompt:
    message: str  # the user's message
    encoded: Encoded  # the history and the message, as the model is given them
    dropped: int = 0  # oldest exchanges dropped from the history so that it fits


class ChatSession:
    """One conversation: the system message, the (message, answer) history, and the limit they
    must fit: ``context_length`` positions (an int, or a callable asked once, the first time there
    is a history to fit) less ``max_new_tokens`` for the answer."""

    def __init__(self, prompter: Prompter, max_new_tokens: int, context_length: int | Callable[[], int],
                 system: str | None = None):
        self.prompter, self.system = prompter, system
        self.answer_room = 0 if prompter.encoder_decoder else max_new_tokens  # a T5 answer is the decoder's
        self._context_length = context_length
        self.history: list[tuple[str, str]] = []

    @classmethod
    def of(cls, generator, system: str | None = None) -> "ChatSession":
        """A session on a Generator: its prompter and sampling; its model's positions (read when first needed)."""
        check_chattable(generator.run)
        return cls(generator.prompter, generator.sampling.max_new_tokens, generator.context_length, system)

    @property
    def context_length(self) -> int:
        if callable(self._context_length):
            self._context_length = self._context_length()
        return self._context_length

    def limit(self) -> str:
        """What must fit, in words (for a note when exchanges are dropped)."""
        needs = f"the history and an answer of {self.answer_room} tokens" if self.answer_room else "the history"
        return f"{needs} must fit the model's {self.context_length} positions"

    def encode(self, message: str) -> Encoded:
        """The history and ``message`` as the model is given them, with nothing dropped."""
        return self.prompter.encode(conversation(self.prompter.dataset, message, self.history, self.system))

    def prompt(self, message: str) -> Prompt:
        """``message`` after the history; the oldest exchanges are dropped (for good) until it fits."""
        encoded, dropped = self.encode(message), 0
        while self.history and len(encoded.ids) + self.answer_room > self.context_length:
            self.history.pop(0)
            dropped += 1
            encoded = self.encode(message)
        return Prompt(message, encoded, dropped)

    def add(self, message: str, answer: str) -> None:
        self.history.append((message, answer))

    def reset(self) -> None:
        self.history = []

    def load(self, messages: list[dict]) -> str:
        """OpenAI chat messages (an optional system message, then user and assistant alternating,
        ending with the user's) -> this session's system message and history; returns the last
        user message, the one to prompt with."""
        self.system, self.history, message = split_messages(messages)
        if self.system is not None:  # refused here, not at the first prompt, if the format has no system turn
            conversation(self.prompter.dataset, message, system=self.system)
        return message

    def messages(self) -> list[dict]:
        """The session as OpenAI chat messages."""
        system = [{"role": "system", "content": self.system}] if self.system is not None else []
        return system + [{"role": role, "content": text} for exchange in self.history
                         for role, text in zip(("user", "assistant"), exchange)]
