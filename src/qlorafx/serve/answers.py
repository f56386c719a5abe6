"""Engine rows -> OpenAI response bodies: whole (``chat.completion``, ``text_completion``) or as
server-sent-event chunks (``chat.completion.chunk``; a final chunk with each choice's
``finish_reason``; usage last when asked for; ``data: [DONE]``)."""

from __future__ import annotations

import json
import time
import uuid
from typing import AsyncIterator

from qlorafx.infer.batching import merged
from qlorafx.serve.protocol import ApiError, internal_error


class Answer:
    """The n rows (choices) of one request."""

    def __init__(self, kind: str, model: str, streams: list, prompt_tokens: int):
        self.kind, self.model, self.streams, self.prompt_tokens = kind, model, streams, prompt_tokens
        self.id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def cancel(self) -> None:
        for stream in self.streams:
            stream.cancel()

    def usage(self) -> dict:
        completion = sum(s.completion.completion_tokens for s in self.streams if s.completion is not None)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    # -- whole ----------------------------------------------------------------------------------

    async def whole(self) -> dict:
        done = [await stream.wait() for stream in self.streams]
        _raise_failed(done)
        choices = []
        for index, completion in enumerate(done):
            choice = {"index": index, "finish_reason": completion.finish_reason, "logprobs": None}
            if self.kind == "chat":
                choice["message"] = {"role": "assistant", "content": completion.text}
            else:
                choice["text"] = completion.text
            choices.append(choice)
        return {"id": self.id, "object": "chat.completion" if self.kind == "chat" else "text_completion",
                "created": self.created, "model": self.model, "choices": choices, "usage": self.usage()}

    # -- streamed -------------------------------------------------------------------------------

    def _chunk(self, choices: list, usage: dict | None = None, with_usage: bool = False) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
                "created": self.created, "model": self.model, "choices": choices}
        if with_usage:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def _piece(self, index: int, text: str | None, finish: str | None = None, role: bool = False) -> dict:
        if self.kind == "chat":
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
            return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}

    async def events(self, include_usage: bool) -> AsyncIterator[str]:
        """The SSE body. Cancelling it (the client went away) cancels every row."""
        try:
            if self.kind == "chat":
                for index in range(len(self.streams)):
                    yield self._chunk([self._piece(index, None, role=True)], None, include_usage)
            async for index, piece in merged(self.streams):
                if piece is not None:
                    yield self._chunk([self._piece(index, piece)], None, include_usage)
            done = [s.completion for s in self.streams]
            failed = [c for c in done if c.finish_reason == "error"]
            if failed:
                error = _failure(failed[0])
                yield f"data: {json.dumps(error.body())}\n\n"
            else:
                for index, completion in enumerate(done):
                    yield self._chunk([self._piece(index, None, completion.finish_reason)], None, include_usage)
                if include_usage:
                    yield self._chunk([], self.usage(), True)
            yield "data: [DONE]\n\n"
        finally:
            self.cancel()  # a no-op for rows already done


def _failure(completion) -> ApiError:
    """A row that ended in an error: an exception inside the server is told by its id only (logged by the
    batcher with its traceback); a reason qlorafx gave itself (an adapter unloaded meanwhile) is said."""
    if completion.incident is not None:
        return internal_error(completion.incident)
    return ApiError(500, f"generation failed: {completion.error}", kind="server_error")


def _raise_failed(done: list) -> None:
    for completion in done:
        if completion.finish_reason == "error":
            raise _failure(completion)
