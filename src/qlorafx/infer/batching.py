"""Requests that arrive together answered together: one ``generate`` over rows that may each use a
different adapter, every row streamed token by token and cancellable on its own.

Why transformers' ``generate`` and not a decode loop of our own: ``generate`` asks its stopping
criteria after every step for a per-row verdict (``unfinished_sequences &= ~criteria(ids)``), with
the new token already appended, and ends when every row is done. One criteria object, ``_Rows``,
therefore streams each row's new token to its ``Stream``, and ends a row on the row's own stop
tokens, stop strings, token limit or cancellation, while the other rows go on. peft's
``adapter_names=`` (its mixed-batch forward) gives each row its adapter, "__base__" none. What
generate cannot do is admit a row into a running batch (continuous batching: transformers' own
``generate_batch`` supports neither streaming nor peft adapters), so requests that arrive while a
batch runs wait for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from qlorafx.infer.generate import Sampling
from qlorafx.infer.prompt import Encoded
from qlorafx.infer.renderers import visible_text

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch
log = logging.getLogger("qlorafx.serve")


@dataclass(frozen=True)
class Completion:
    """How a row ended: ``finish_reason`` is 'stop' (stop token, end marker or stop string),
    'length' (max_new_tokens), 'cancelled', or 'error' (``error`` says why)."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None
    # set when the row failed inside the server (an exception): the id its log gives the traceback under; the
    # error's text (the exception's message) is then for that log only, not for a client
    incident: str | None = None


def incident_id() -> str:
    """A new id for a failure the server logs, to give the client in its place."""
    return f"err_{secrets.token_hex(8)}"


class Stream:
    """One request's row: iterate it (``for delta in stream`` or ``async for delta in
    stream.deltas()``) for the answer's text piece by piece; ``result()`` / ``await wait()`` for
    the whole; ``cancel()`` stops its generation (the other rows are unaffected)."""

    def __init__(self, model: str, adapter: str, renderer, encoded: Encoded, sampling: Sampling,
                 stop: tuple[str, ...] = (), seed: int | None = None, alone: bool = False):
        # adapter: peft's name for the row's adapter, or BASE; alone: the adapter cannot share a
        # mixed batch (DoRA: peft's mixed-batch forward refuses it), so its rows batch apart
        self.model, self.adapter, self.renderer, self.encoded = model, adapter, renderer, encoded
        self.alone = alone
        self.sampling, self.stop, self.seed = sampling, stop, seed
        self.ids: list[int] = []
        self.sent = ""
        self.completion: Completion | None = None
        self._pieces: list[str] = []
        self._cancelled = threading.Event()
        self._changed = threading.Condition()
        self._listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # -- the consumer's side ------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def __iter__(self):
        taken = 0
        while True:
            with self._changed:
                while taken == len(self._pieces) and self.completion is None:
                    self._changed.wait()
                pieces, done = self._pieces[taken:], self.completion is not None
            taken += len(pieces)
            yield from pieces
            if done and taken == len(self._pieces):
                return

    async def deltas(self):
        """The answer's new text, as it is generated (async)."""
        event = asyncio.Event()
        with self._changed:
            self._listeners.append((asyncio.get_running_loop(), event))
        taken = 0
        try:
            while True:
                with self._changed:
                    pieces, done = self._pieces[taken:], self.completion is not None
                    event.clear()
                taken += len(pieces)
                for piece in pieces:
                    yield piece
                if done and taken == len(self._pieces):
                    return
                if not pieces:
                    await event.wait()
        finally:
            with self._changed:
                self._listeners = [(loop, e) for loop, e in self._listeners if e is not event]

    def result(self) -> Completion:
        with self._changed:
            while self.completion is None:
                self._changed.wait()
            return self.completion

    async def wait(self) -> Completion:
        async for _ in self.deltas():
            pass
        return self.completion

    # -- the generating side (the scheduler's thread) -----------------------------------------

    def _publish(self, piece: str = "", completion: Completion | None = None) -> None:
        with self._changed:
            if piece:
                self._pieces.append(piece)
            if completion is not None:
                self.completion = completion
            self._changed.notify_all()
            listeners = list(self._listeners)
        for loop, event in listeners:
            loop.call_soon_threadsafe(event.set)

    def _step(self, token: int) -> bool:
        """Take one generated token; True when the row is done."""
        if self.cancelled:
            return self._finish("cancelled")
        self.ids.append(token)
        text, ended = visible_text(self.renderer, self.ids, self.encoded, self.stop)
        if text.startswith(self.sent) and len(text) > len(self.sent):
            self._publish(text[len(self.sent):])
            self.sent = text
        if ended or token in self.renderer.stop_ids:
            return self._finish("stop")
        if len(self.ids) >= self.sampling.max_new_tokens:
            return self._finish("length")
        return False

    def _finish(self, reason: str, error: str | None = None, incident: str | None = None) -> bool:
        if self.completion is not None:
            return True
        text = self.sent
        if reason in ("stop", "length"):  # the whole answer: nothing is held back any more
            text, ended = visible_text(self.renderer, self.ids, self.encoded, self.stop)
            text = text if ended else self.renderer.decode(self.ids, self.encoded)
        piece = text[len(self.sent):] if text.startswith(self.sent) else ""
        self.sent += piece
        self._publish(piece, Completion(self.sent, reason, len(self.encoded.ids), len(self.ids), error, incident))
        return True


async def merged(streams: list[Stream]):
    """(row index, new text) from all rows as they come; (index, None) when a row ends."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream: Stream) -> None:
        async for piece in stream.deltas():
            await queue.put((index, piece))
        await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    running = len(streams)
    try:
        while running:
            index, piece = await queue.get()
            running -= piece is None
            yield index, piece
    finally:
        for task in tasks:
            task.cancel()


def batch_key(stream: Stream) -> tuple:
    """Rows that may share one generate: the same decoding (greedy, or the same sampling options);
    a seeded sampling request runs alone so that its seed gives the same answer every time."""
    s = stream.sampling
    apart = stream.adapter if stream.alone else None
    if s.greedy:
        return ("greedy", apart)
    return ("sample", s.temperature, s.top_p, s.top_k, id(stream) if stream.seed is not None else None, apart)


def _rows_criteria(streams: list[Stream]):
    import torch
    from transformers import StoppingCriteria

    class _Rows(StoppingCriteria):
        """generate's per-row verdict after each step: stream the new token, end the rows that are done."""

        def __call__(self, input_ids, scores, **kwargs):
            done = [stream.completion is not None or stream._step(token)
                    for stream, token in zip(streams, input_ids[:, -1].tolist())]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return _Rows()


@dataclass
class Scheduler:
    """One thread that runs the batches: waits for requests, lets those arriving within
    ``gather_s`` of each other join, and answers up to ``max_batch`` rows in one generate."""

    model: Any  # the peft model holding every adapter
    max_batch: int = 16
    gather_s: float = 0.05  # bench/RESULTS.md: 50 ms let 16 closed-loop clients share batches that 5 ms split
    model_lock: threading.Lock = field(default_factory=threading.Lock)  # held while a batch runs

    def __post_init__(self):
        self._pending: list[Stream] = []
        self._wake = threading.Condition()
        self._closed = False
        self.batches_run = 0  # generate calls so far (tests, /health and the bench read them)
        self.rows_run = 0  # rows in them: rows_run / batches_run is the mean batch size
        self._thread = threading.Thread(target=self._loop, name="qlorafx-batches", daemon=True)
        self._thread.start()

    def submit(self, stream: Stream) -> Stream:
        with self._wake:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._pending.append(stream)
            self._wake.notify()
        return stream

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
            pending, self._pending = self._pending, []
        for stream in pending:
            stream._finish("cancelled")
        self._thread.join(timeout=60)

    def fail_adapter(self, adapter: str, why: str) -> None:
        """End the waiting rows of an adapter that is going away."""
        with self._wake:
            gone = [s for s in self._pending if s.adapter == adapter]
            self._pending = [s for s in self._pending if s.adapter != adapter]
        for stream in gone:
            stream._finish("error", why)

    def _take(self) -> list[Stream]:
        with self._wake:
            for stream in [s for s in self._pending if s.cancelled]:
                stream._finish("cancelled")
            self._pending = [s for s in self._pending if not s.cancelled]
            if not self._pending:
                return []
            key = batch_key(self._pending[0])
            batch = [s for s in self._pending if batch_key(s) == key][:self.max_batch]
            self._pending = [s for s in self._pending if s not in batch]
            return batch

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
            time.sleep(self.gather_s)  # requests sent together reach us milliseconds apart
            with self.model_lock:  # taken before the batch: rows arriving while it is held join it
                batch = self._take()
                if batch:
                    self._run(batch)

    def pending(self) -> int:
        """Rows waiting for a batch."""
        with self._wake:
            return len(self._pending)

    def _run(self, batch: list[Stream]) -> None:
        self.batches_run += 1
        self.rows_run += len(batch)
        try:
            generate_rows(self.model, batch)
        except Exception as err:  # one failed batch ends its rows with the error; the server goes on
            incident = incident_id()
            log.exception("a batch of %d rows failed (error id %s)", len(batch), incident)
            for stream in batch:
                stream._finish("error", f"{type(err).__name__}: {err}", incident)
        for stream in batch:  # a row still open when generate returned
            stream._finish("cancelled" if stream.cancelled else "length")


def generate_rows(model, batch: list[Stream]) -> None:
    """One generate over the rows, left-padded as ``qlorafx generate`` pads them."""
    import torch
    from transformers import StoppingCriteriaList, set_seed

    width = max(len(s.encoded.ids) for s in batch)
    pad = batch[0].renderer.tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(s.encoded.ids)) + s.encoded.ids for s in batch], device=model.device)
    attention_mask = torch.tensor([[0] * (width - len(s.encoded.ids)) + [1] * len(s.encoded.ids) for s in batch],
                                  device=model.device)
    sampling = batch[0].sampling
    if batch[0].seed is not None:
        set_seed(batch[0].seed)
    # Stop tokens every row shares end rows inside generate (as qlorafx generate's eos_token_id);
    # each row's own further stop tokens are _Rows' to enforce.
    shared_stops = sorted(set.intersection(*(set(s.renderer.stop_ids) for s in batch)))
    if batch[0].alone:  # one adapter that cannot be mixed: made the active one instead
        model.set_adapter(batch[0].adapter)
        by_row = {}
    else:
        by_row = {"adapter_names": [s.adapter for s in batch]}
    with torch.no_grad():
        model.generate(input_ids=input_ids, attention_mask=attention_mask,
                       max_new_tokens=max(s.sampling.max_new_tokens for s in batch), pad_token_id=pad,
                       eos_token_id=shared_stops or None, use_cache=True,
                       stopping_criteria=StoppingCriteriaList([_rows_criteria(batch)]),
                       **by_row,
                       **sampling.generate_kwargs())
