"""The OpenAI-compatible HTTP API over an Engine (FastAPI).

    GET  /health                      no key needed: whether the server is up, and what it serves
    GET  /v1/models[/{model}]         the base and each adapter, with its lineage (run, base, format, recipe)
    POST /v1/chat/completions         messages rendered with the adapter's run's template
    POST /v1/completions              a prompt rendered as `qlorafx generate --prompt` renders it
    POST /v1/load_lora_adapter        {lora_name, lora_path: a finished run}   (--allow-adapter-loading)
    POST /v1/unload_lora_adapter      {lora_name}                              (--allow-adapter-loading)

Every error is an OpenAI error body with the status the official client maps to its exceptions
(400 BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError,
413 for a body over the limit); bodies are read and parsed here, so a malformed, non-UTF-8 or
oversized one gets a message that says so.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qlorafx.errors import UserError
from qlorafx.infer.batching import incident_id
from qlorafx.infer.engine import UnknownModel
from qlorafx.infer.generate import Sampling
from qlorafx.serve.answers import Answer
from qlorafx.serve.protocol import ApiError, ChatRequest, internal_error, CompletionRequest, LoadAdapter, UnloadAdapter, parse

MAX_BODY = 2 << 20  # bytes: far more than any prompt the model has positions for
DRAIN_LIMIT = 64 << 20  # an oversized body is read and dropped up to this, so the client sees the 413
log = logging.getLogger("qlorafx.serve")


class Incidents:
    """An exception no handler turned into an answer: the client gets a generic 500 with an id, the log the
    traceback under that id (an exception's message can hold paths or secrets). An ASGI middleware rather than
    an exception handler for Exception: Starlette re-raises after such a handler, and uvicorn then closes the
    connection, so a client reusing it for its next request got a connection reset."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if started:  # a stream already under way: nothing can be said in its place; the server logs it
                raise
            incident = incident_id()
            log.exception("unexpected error on %s %s (error id %s)", scope.get("method"), scope.get("path"), incident)
            await JSONResponse(internal_error(incident).body(), status_code=500)(scope, receive, send)


def create_app(engine, *, api_key: str | None = None, allow_adapter_loading: bool = False,
               default_max_tokens: int = 256, max_body: int = MAX_BODY) -> FastAPI:
    app = FastAPI(title="qlorafx serve", docs_url=None, redoc_url=None, openapi_url=None)
    started = int(time.time())

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        message = f"no such endpoint: {request.method} {request.url.path}" if err.status_code in (404, 405) \
            else str(err.detail)
        return JSONResponse(ApiError(err.status_code, message).body(), status_code=err.status_code)

    app.add_middleware(Incidents)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise ApiError(401, "invalid or missing API key: send the header 'Authorization: Bearer KEY' with the key "
                                "the server was started with", code="invalid_api_key")

    async def body_of(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        too_big = ApiError(413, f"the request body is over {max_body >> 20} MiB; send a smaller request",
                           code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= max_body:
                chunks.append(chunk)
            elif size > DRAIN_LIMIT:
                break
        if size > max_body or (declared.isdigit() and int(declared) > max_body):
            raise too_big
        return b"".join(chunks)

    def served(name: str):
        try:
            return engine.get(name)
        except UnknownModel as err:
            raise ApiError(404, str(err), param="model", code="model_not_found") from None

    def card(model) -> dict:
        base = engine.base.name
        return {"id": model.name, "object": "model", "created": started, "owned_by": "qlorafx",
                "root": model.name if model.kind == "base" else str(model.run.path),
                "parent": None if model.kind == "base" else base, "qlorafx": {**model.lineage(), "base_model": base}}

    @app.get("/health")
    async def health():
        scheduler = engine.scheduler
        return {"status": "ok", "models": [m.name for m in engine.models()],
                "batches": scheduler.batches_run, "rows": scheduler.rows_run, "waiting": scheduler.pending()}

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [card(m) for m in engine.models()]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str, request: Request):
        authorize(request)
        return card(served(name))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        authorize(request)
        body = parse(ChatRequest, await body_of(request))
        served(body.model)
        # rendered off the event loop: a long prompt must not hold up the other requests' streams
        encoded = await asyncio.to_thread(_user_error, lambda: engine.encode_chat(body.model, body.messages),
                                          "messages")
        return await answer(request, "chat", body, [encoded])

    @app.post("/v1/completions")
    async def completions(request: Request):
        authorize(request)
        body = parse(CompletionRequest, await body_of(request))
        served(body.model)
        encoded = await asyncio.to_thread(
            lambda: [_user_error(lambda p=p: engine.encode_prompt(body.model, p), "prompt") for p in body.prompts])
        return await answer(request, "completion", body, encoded)

    async def answer(request: Request, kind: str, body, prompts: list):
        plans = []
        for encoded in prompts:  # everything is checked before any row is submitted
            room = engine.room(encoded)
            wanted = body.limit or min(default_max_tokens, room)
            if wanted > room or wanted < 1:
                raise ApiError(400, f"the prompt is {len(encoded.ids)} tokens and {wanted} new tokens were asked for, "
                                    f"but the model has {engine.context_length} positions; ask for at most "
                                    f"{max(room, 0)} (max_tokens) or shorten the prompt", param="max_tokens")
            sampling = Sampling(max_new_tokens=wanted, temperature=body.temperature, top_p=body.top_p,
                                top_k=body.top_k, seed=body.seed or 0)
            plans.append((encoded, sampling))
        streams = []
        try:
            for encoded, sampling in plans:
                for choice in range(body.n):
                    seed = None if body.seed is None else body.seed + choice  # n seeded choices differ
                    streams.append(_user_error(lambda: engine.submit(body.model, encoded, sampling, body.stops, seed),
                                               "model"))
        except ApiError:  # e.g. the adapter was unloaded meanwhile: no row is left running
            for stream in streams:
                stream.cancel()
            raise
        whole = Answer(kind, body.model, streams, sum(len(encoded.ids) for encoded in prompts))
        if body.stream:
            return StreamingResponse(whole.events(body.include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await _unless_disconnected(request, whole)

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: Request):
        authorize(request)
        allowed()
        body = parse(LoadAdapter, await body_of(request))
        model = await asyncio.to_thread(_user_error, lambda: engine.load_adapter(body.lora_path, body.lora_name),
                                        "lora_path")
        return {"status": "ok", "message": f"adapter {model.name!r} loaded", "model": card(model)}

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: Request):
        authorize(request)
        allowed()
        body = parse(UnloadAdapter, await body_of(request))
        served(body.lora_name)
        await asyncio.to_thread(_user_error, lambda: engine.unload_adapter(body.lora_name), "lora_name")
        return {"status": "ok", "message": f"adapter {body.lora_name!r} unloaded"}

    def allowed() -> None:
        if not allow_adapter_loading:
            raise ApiError(403, "loading and unloading adapters is off; start qlorafx serve with "
                                "--allow-adapter-loading to allow it", code="adapter_loading_disabled")

    return app


def _user_error(call, param: str):
    """A bad request's UserError (a message the renderer or engine wrote for the user) as a 400."""
    try:
        return call()
    except UnknownModel as err:
        raise ApiError(404, str(err), param="model", code="model_not_found") from None
    except UserError as err:
        raise ApiError(400, str(err), param=param) from None


async def _unless_disconnected(request: Request, whole: Answer):
    """The whole answer, or its rows cancelled as soon as the client goes away."""
    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    answering, watching = asyncio.create_task(whole.whole()), asyncio.create_task(gone())
    try:
        await asyncio.wait({answering, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
    if not answering.done():
        whole.cancel()
        answering.cancel()
        return Response(status_code=499)  # nobody is listening; the code is for the access log
    return JSONResponse(answering.result())
