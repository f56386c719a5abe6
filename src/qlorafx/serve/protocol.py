"""The OpenAI request bodies this server accepts, checked by pydantic, and its error bodies.

Unknown fields are refused by name (a typo such as ``max_token`` would otherwise be silently
ignored); OpenAI fields this server cannot honour are accepted only at their default value, so a
client that sends ``presence_penalty: 0`` works and one that asks for ``logprobs: true`` is told.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# name -> the values that mean "not asked for": anything else is refused as unsupported
UNSUPPORTED = {"presence_penalty": (0, 0.0, None), "frequency_penalty": (0, 0.0, None), "logprobs": (False, None),
               "top_logprobs": (None, 0), "logit_bias": (None, {}), "tools": (None, []), "tool_choice": (None, "none"),
               "functions": (None, []), "function_call": (None, "none"), "response_format": (None, {"type": "text"}),
               "parallel_tool_calls": (None, False, True), "echo": (False, None), "best_of": (None, 1),
               "suffix": (None, ""), "service_tier": (None, "auto", "default"), "store": (None, False),
               "reasoning_effort": (None,), "modalities": (None, ["text"]), "prediction": (None,),
               "audio": (None,), "web_search_options": (None,)}
IGNORED = ("user", "metadata")  # accepted and without effect on the answer


class ApiError(Exception):
    """An OpenAI-style error: the HTTP status, and the body's message, type, param and code."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def internal_error(incident: str) -> ApiError:
    """What a client is told of a failure inside the server: the id the server's log holds the details under, never
    the exception's message (paths, settings, whatever a library put in it)."""
    return ApiError(500, f"the server failed to answer this request (error id {incident}); its log has the details "
                         "under that id", code="internal_error", kind="server_error")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)  # OpenAI's default and range; 0 is greedy
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)  # not OpenAI's; vLLM's name for it
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)
    user: str | None = None
    metadata: dict | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, defaults in UNSUPPORTED.items():
                if name in data and not any(data[name] == d and type(data[name]) is type(d) for d in defaults):
                    raise ValueError(f"{name!r} is not supported by this server (qlorafx serve); leave it out")
            return {k: v for k, v in data.items() if k not in UNSUPPORTED}
        return data

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop):
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("give at most 4 non-empty stop strings")
        return stops

    @property
    def stops(self) -> tuple[str, ...]:
        return tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(_Common):
    messages: list[Any] = Field(min_length=1)  # their shape is checked by the adapter's renderer, message by message
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Common):
    prompt: str | list[str]

    @field_validator("prompt", mode="before")
    @classmethod
    def _no_token_ids(cls, prompt):
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], str):
            raise ValueError("prompts given as token ids are not supported; send the prompt as text, which is "
                             "rendered with the adapter's run's template")
        return prompt

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, prompt):
        if isinstance(prompt, list) and not prompt:
            raise ValueError("give a prompt: a string, or a non-empty list of strings")
        return prompt

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def limit(self) -> int | None:
        return self.max_tokens


class LoadAdapter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lora_name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    lora_path: str = Field(min_length=1)


class UnloadAdapter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lora_name: str = Field(min_length=1)
    lora_int_id: int | None = None  # vLLM clients send it; names are what this server uses


def parse(model: type[BaseModel], body: bytes) -> Any:
    """The request body as ``model``, or a 400 ApiError that says what is wrong and where."""
    import json

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ApiError(400, f"the request body is not UTF-8 text (byte {err.start}); send JSON encoded as UTF-8") \
            from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ApiError(400, f"the request body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") \
            from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, found {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise validation_error(err) from None


def validation_error(err: ValidationError) -> ApiError:
    problems, first = [], None
    for problem in err.errors()[:5]:
        where = ".".join(str(part) for part in problem["loc"] if not _union_tag(part))
        first = first or where or None
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown field; see the OpenAI API reference for the fields this endpoint takes"
        elif problem["type"] == "missing":
            message = "required"
        problems.append(f"{where}: {message}" if where else message)
    return ApiError(400, "; ".join(problems), param=first)


def _union_tag(part) -> bool:
    """A step of a pydantic error location that names a union's member type, not a field."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool", "none", "list", "dict")
                                      or "[" in part or part.startswith("function-"))
