"""The web page's chat, without the page: conversations, answers streamed from the engine, Stop, and
keeping a conversation as training data. The Gradio page (``page.py``) only wires widgets to this.

    chat = WebChat(engine, kept=KeptChats("chats.jsonl"))
    async for update in chat.reply(session, "alpaca", conversation, "Hi", options):   # streamed
        show(update.conversation.view(), update.status)
    chat.stop(session)                # from another request: the session's rows are cancelled in the engine
    chat.keep(conversation)           # one {"messages": [...]} line of the chat format that `train` reads

Every answer goes through the same engine calls as ``qlorafx serve``'s API (``encode_chat`` with the
run's own format and template, then ``submit``), so the page, the API and ``qlorafx chat`` give the
model the same tokens. Anything that goes wrong (a model the engine does not serve, messages the
run's format cannot render, a prompt with no room left, a failed generation) ends the update with an
``error:`` status: the page shows it, the conversation is unchanged, the server goes on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import AsyncIterator

from qlorafx.errors import UserError
from qlorafx.infer.batching import merged
from qlorafx.infer.chat import ChatSession
from qlorafx.infer.generate import Sampling
from qlorafx.serve.kept import KeptChats


@dataclass(frozen=True)
class Options:
    """What the page's controls set for an answer. temperature 0 is greedy."""

    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    system: str = ""  # a system message, for runs whose format has one (empty: none)

    def sampling(self) -> Sampling:
        return Sampling(max_new_tokens=int(self.max_new_tokens), temperature=float(self.temperature),
                        top_p=float(self.top_p)).check()


@dataclass
class Message:
    role: str  # "user" | "assistant"
    content: str
    model: str | None = None  # who answered (assistant messages)
    edited: bool = False  # an answer corrected by hand


@dataclass
class Conversation:
    """One column's conversation as shown: user and assistant messages, alternating, and the system
    message its answers were generated with (set by its first message), which is what Keep records."""

    messages: list[Message] = field(default_factory=list)
    system: str = ""

    def view(self) -> list[dict]:
        """What the chatbot widget shows."""
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def chat(self) -> list[dict]:
        """The OpenAI messages the model is given (and that are kept as data)."""
        head = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return head + self.view()

    def with_message(self, message: Message) -> "Conversation":
        return replace(self, messages=[*self.messages, message])

    def asked(self, message: str, system: str) -> "Conversation":
        """The conversation with the user's next message; a new one takes ``system`` as its own. An
        answer generated under another system message than the earlier ones would make the
        conversation (and the data it is kept as) one the model never saw: refused."""
        if not self.messages:
            return Conversation([Message("user", message)], system)
        if system.strip() != self.system.strip():
            began = f"'{self.system.strip()}'" if self.system.strip() else "none"
            raise WebChatError(f"the system message changed since this conversation began (it began with {began}); "
                               "press New to start a conversation with the new one, or set it back")
        return self.with_message(Message("user", message))

    def edit(self, index: int, text: str) -> "Conversation":
        """The message at ``index`` replaced by ``text`` (an answer corrected by hand)."""
        if not 0 <= index < len(self.messages):
            raise WebChatError(f"there is no message {index} to edit; the conversation has {len(self.messages)}")
        messages = list(self.messages)
        messages[index] = replace(messages[index], content=text, edited=messages[index].edited
                                  or text != messages[index].content)
        return replace(self, messages=messages)

    def models(self) -> list[str]:
        """The models whose answers it holds, in order of first answer."""
        return list(dict.fromkeys(m.model for m in self.messages if m.role == "assistant" and m.model))


class WebChatError(UserError):
    """Something the page was asked that cannot be done; the page shows the message."""


@dataclass(frozen=True)
class Update:
    """What the page shows after each new piece of an answer: the conversation(s) and a status line."""

    conversations: tuple[Conversation, ...]
    status: str = ""
    accepted: bool = True  # False: the message was not answered (an error); the page keeps it to retry

    @property
    def conversation(self) -> Conversation:
        return self.conversations[0]


class WebChat:
    def __init__(self, engine, kept: KeptChats | None = None, defaults: Options = Options()):
        self.engine, self.kept, self.defaults = engine, kept, defaults
        self._active: dict[str, set] = {}  # session -> its rows still generating
        self._lock = threading.Lock()

    def model_names(self) -> list[str]:
        """Adapters first (what a page is opened for), the base last."""
        models = self.engine.models()
        return [m.name for m in models if m.kind != "base"] + [m.name for m in models if m.kind == "base"]

    @property
    def context_length(self) -> int:
        return self.engine.context_length

    # -- answering ------------------------------------------------------------------------------

    async def reply(self, session: str, model: str, conversation: Conversation, message: str,
                    options: Options) -> AsyncIterator[Update]:
        """The model's answer to ``message`` after ``conversation``, streamed."""
        async for update in self.reply_each(session, [model], [conversation], message, options):
            yield update

    async def reply_each(self, session: str, models: list[str], conversations: list[Conversation], message: str,
                         options: Options) -> AsyncIterator[Update]:
        """Each model answers ``message`` after its own conversation; the rows go to the engine
        together (one batch) and stream side by side. On an error nothing is submitted and the
        conversations stay as they were."""
        if not message.strip():
            yield Update(tuple(conversations), "error: type a message first", accepted=False)
            return
        try:
            sampling = options.sampling()
            asked = [c.asked(message, options.system) for c in conversations]
            prompts = [self._prompt(m, c.chat(), sampling.max_new_tokens) for m, c in zip(models, asked)]
            encoded = [e for e, _ in prompts]
            dropped = max(d for _, d in prompts)
            limits = [self._limit(e, sampling.max_new_tokens) for e in encoded]
            streams = [self.engine.submit(m, e, replace(sampling, max_new_tokens=n))
                       for m, e, n in zip(models, encoded, limits)]
        except UserError as err:
            yield Update(tuple(conversations), f"error: {err}", accepted=False)
            return
        self._track(session, streams, True)
        started = time.monotonic()
        texts = [""] * len(streams)

        def shown() -> tuple[Conversation, ...]:
            return tuple(c.with_message(Message("assistant", t, m)) for c, t, m in zip(asked, texts, models))

        try:
            yield Update(shown(), "generating…")
            async for index, piece in merged(streams):
                if piece:
                    texts[index] += piece
                    yield Update(shown(), "generating…")
            done = [s.completion for s in streams]
            failed = [(m, c) for m, c in zip(models, done) if c.finish_reason == "error"]
            if failed:
                # an exception inside the server is shown by its id, as the API gives it (serve/protocol.py)
                why = "; ".join(f"{m}: generation failed: " + (f"error id {c.incident}; the server's log has the details"
                                                              if c.incident else c.error) for m, c in failed)
                yield Update(tuple(conversations), f"error: {why}", accepted=False)
                return
            texts = [c.text for c in done]
            notes = [f"the oldest {dropped} exchange{'s' * (dropped != 1)} left out of the prompt: the conversation "
                     f"no longer fits the model's {self.context_length} positions"] if dropped else []
            if limits != [sampling.max_new_tokens] * len(limits):
                notes.append(f"at most {min(limits)} new tokens: the model's {self.context_length} positions "
                             f"were nearly full")
            yield Update(shown(), "; ".join([summary(models, done, time.monotonic() - started), *notes]))
        finally:
            for stream in streams:  # the page went away or the task was cancelled: free the engine
                stream.cancel()
            self._track(session, streams, False)

    def _prompt(self, model: str, messages: list[dict], max_new_tokens: int):
        """(prompt ids, exchanges left out): an adapter's conversation goes through a ChatSession
        with its run's format and template, which leaves out the oldest exchanges until the rest
        fits with room for the answer; the base (no run, no format) through its tokenizer's template."""
        served = self.engine.get(model)
        prompter = getattr(served.renderer, "prompter", None)
        if prompter is None:
            return self.engine.encode_chat(model, messages), 0
        session = ChatSession(prompter, max_new_tokens, self.engine.context_length)
        prompt = session.prompt(session.load(messages))
        return prompt.encoded, prompt.dropped

    def _limit(self, encoded, max_new_tokens: int) -> int:
        """max_new_tokens, or fewer where the model's positions run out (the slider's maximum is
        the whole context, which a long conversation leaves no room for)."""
        room = self.engine.room(encoded)
        if room < 1:
            raise WebChatError(f"the conversation is {len(encoded.ids)} tokens and fills the model's "
                               f"{self.context_length} positions; start a new conversation")
        return min(max_new_tokens, room)

    def stop(self, session: str) -> int:
        """Cancels the session's rows in the engine; how many were still generating."""
        with self._lock:
            streams = list(self._active.get(session, ()))
        for stream in streams:
            stream.cancel()
        return sum(s.completion is None for s in streams)

    def _track(self, session: str, streams: list, active: bool) -> None:
        with self._lock:
            rows = self._active.setdefault(session, set())
            if active:
                rows.update(streams)
            else:
                rows.difference_update(streams)
                if not rows:
                    del self._active[session]

    # -- keeping as data --------------------------------------------------------------------------

    def keep(self, conversation: Conversation) -> str:
        """Appends the conversation, with the system message its answers were generated with, to the
        kept-chats file; the status line says where."""
        if self.kept is None:
            raise WebChatError("this page was started without a file to keep conversations in (--keep FILE)")
        line = self.kept.append(conversation.chat(), models=conversation.models(),
                                edited=any(m.edited for m in conversation.messages))
        exchanges = sum(m.role == "assistant" for m in conversation.messages)
        return f"kept {exchanges} exchange{'s' * (exchanges != 1)} as line {line} of {self.kept.path}"


def summary(models: list[str], done: list, seconds: float) -> str:
    reasons = {"stop": "finished", "length": "stopped at the token limit", "cancelled": "stopped"}
    parts = [f"{m}: {c.completion_tokens} tokens, {reasons.get(c.finish_reason, c.finish_reason)}"
             for m, c in zip(models, done)]
    return f"{'; '.join(parts)} ({seconds:.1f} s)"
