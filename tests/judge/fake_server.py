"""A real OpenAI-compatible HTTP server (FastAPI + uvicorn on a free 127.0.0.1 port) with fixed rules.

Contestant models answer a question in a known way; judge models follow one rule each:

    short / medium / long   answers of growing length (long > medium > short, always)
    first                   the answer shown first wins ([[A]]), whatever it says
    longer                  the longer answer wins ([[A]] or [[B]]), whichever position it is in
    longer-score            score mode: "8 4" for the longer answer first, "4 8" for it second
    garbage                 a reply with no verdict
    rambling                a reply cut off (finish_reason 'length') before its verdict

Every request is logged (model, messages, whether it was answered); ``hold_judge_after(n)`` lets the
next n judge requests through and holds the rest until ``release()`` (a comparison can be killed
while they wait); ``fail_next(n, status)`` answers the next n requests with that error status;
``delay_s`` slows every answer, and ``most_in_flight`` counts the most requests answered at once.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request as HttpRequest
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

CONTESTANTS = {"short", "medium", "long"}
JUDGES = {"first", "longer", "longer-score", "garbage", "rambling"}
ANSWER = re.compile(r"\[Answer of assistant (A|B|1|2)\]\n(.*?)\n\[End of answer of assistant \1\]", re.S)


def contestant_answer(model: str, question: str) -> str:
    words = question.split()
    return {"short": "Yes.",
            "medium": f"Yes: {' '.join(words[:3])}.",
            "long": f"Here is a full answer to '{question}': {' '.join(words * 2)}."}[model]


def judge_reply(model: str, user: str) -> str:
    if model == "first":
        return "Assistant A answers first, which I like.\n[[A]]"
    if model == "garbage":
        return "Both answers have merit; it is hard to say."
    if model == "rambling":
        return "Let me consider every aspect of both answers in turn, starting with"
    a, b = (m.group(2) for m in ANSWER.finditer(user))
    if model == "longer":
        return f"Comparing lengths: {len(a)} and {len(b)}.\n" + ("[[A]]" if len(a) > len(b) else "[[B]]" if len(b) > len(a) else "[[C]]")
    first, second = (8, 4) if len(a) > len(b) else (4, 8) if len(b) > len(a) else (6, 6)
    return f"{first} {second}\nThe longer answer is better."


@dataclass
class Request:
    model: str
    messages: list  # a completion's prompt is logged as one user message
    answered: bool = False
    held: bool = False  # kept waiting by hold_judge_after
    key: str | None = None
    api: str = "chat"  # or "completions"
    stop: list | None = None


@dataclass
class FakeServer:
    api_key: str | None = None
    log: list[Request] = field(default_factory=list)
    url: str = ""
    delay_s: float = 0.0  # each answer takes this long
    in_flight: int = 0
    most_in_flight: int = 0  # the most requests it was answering at once
    _hold_after: int | None = None
    _released: threading.Event = field(default_factory=threading.Event)
    _failures: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """As new (one server serves a whole test session): no log, no key, nothing held or failing."""
        self.release()  # requests held for a killed client are answered into the void, in the old log
        with self._lock:
            self.log, self.api_key, self._hold_after, self._failures[:] = [], None, None, []
            self.delay_s, self.most_in_flight = 0.0, 0

    def judge_requests(self, answered: bool | None = None) -> list[Request]:
        return [r for r in self.log if r.model in JUDGES and (answered is None or r.answered == answered)]

    def contestant_requests(self) -> list[Request]:
        return [r for r in self.log if r.model in CONTESTANTS]

    def hold_judge_after(self, n: int | None) -> None:
        """Let n more judge requests through; hold the ones after them."""
        self._hold_after = None if n is None else len(self.judge_requests()) + n
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def fail_next(self, n: int, status: int) -> None:
        self._failures[:] = [status] * n

    def app(self):
        app = FastAPI()

        def error(status: int, message: str) -> JSONResponse:
            return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": status}}, status)

        def refused(request: HttpRequest) -> JSONResponse | None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            if self.api_key is not None and given != self.api_key:
                return error(401, f"Incorrect API key provided: {given}")  # echoes it, as some servers do
            return None

        @app.get("/v1/models")
        async def models(request: HttpRequest):
            if (answer := refused(request)) is not None:
                return answer
            return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                                               for m in sorted(CONTESTANTS | JUDGES)]}

        async def body_of(request: HttpRequest) -> dict | None:
            try:
                return await request.json()
            except ClientDisconnect:  # a client killed mid-request (the resume tests do that)
                return None

        @app.post("/v1/completions")
        async def completions(request: HttpRequest):
            if (body := await body_of(request)) is None:
                return error(499, "client gone")
            reply = await chat(request, {**body, "messages": [{"role": "user", "content": body["prompt"]}]}, "completions")
            if isinstance(reply, dict):  # a completion's shape: text instead of a message
                reply["object"] = "text_completion"
                reply["choices"] = [{"index": 0, "text": reply["choices"][0]["message"]["content"], "finish_reason": "stop"}]
            return reply

        @app.post("/v1/chat/completions")
        async def chat_completions(request: HttpRequest):
            if (body := await body_of(request)) is None:
                return error(499, "client gone")
            return await chat(request, body, "chat")

        async def chat(request: HttpRequest, body: dict, api: str):
            if (answer := refused(request)) is not None:
                return answer
            entry = Request(body["model"], body["messages"], key=request.headers.get("authorization"), api=api,
                            stop=body.get("stop"))
            with self._lock:
                self.log.append(entry)
                failure = self._failures.pop() if self._failures else None
                held = (entry.model in JUDGES and self._hold_after is not None
                        and len(self.judge_requests()) > self._hold_after)
            if failure is not None:
                return error(failure, f"fake failure {failure}")
            if entry.model not in CONTESTANTS | JUDGES:
                return error(404, f"The model `{entry.model}` does not exist")
            entry.held = held
            with self._lock:
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay_s)
                while held and not self._released.is_set():
                    await asyncio.sleep(0.02)
            finally:
                with self._lock:
                    self.in_flight -= 1
            user = body["messages"][-1]["content"]
            text = contestant_answer(entry.model, user) if entry.model in CONTESTANTS else judge_reply(entry.model, user)
            entry.answered = True
            return {"id": "x", "object": "chat.completion", "created": int(time.time()), "model": entry.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "length" if entry.model == "rambling" else "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

        return app

    def serve(self):
        """Start in a thread; returns a function that stops it."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        server = uvicorn.Server(uvicorn.Config(self.app(), log_level="error", timeout_graceful_shutdown=1))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the fake server did not start"
            time.sleep(0.01)

        def stop():
            self.release()
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()

        return stop
