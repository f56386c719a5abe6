"""The endpoints, through the official ``openai`` client: a concurrency limit each, retries with
back-off, and one clear message for each way a request can fail.

Retries are the client's own (``max_retries``): connection errors, 408, 409, 429 and 5xx are
retried with exponential back-off from 0.5 s to 8 s (jittered), honouring a server's Retry-After.
What still fails after them stops the comparison with an EndpointError; everything answered
before it is already in the cache, so a rerun resumes. The API key is read from the environment
variable the comparison names and is scrubbed from every message that could show it.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from qlorafx.errors import UserError
from qlorafx.judge.spec import Comparison, EndpointSpec, problem, problems_error
from qlorafx.recipe.sources import SourceMap

if TYPE_CHECKING:
    import openai

NO_KEY = "no-key"  # sent where the comparison names no key: never the OPENAI_API_KEY of the environment
SHORT = 300  # characters of a server's error message worth showing
RESUME = "; the answers and judgments received so far are cached: rerun to resume"


class EndpointError(UserError):
    """An endpoint could not be reached, refused the key, lacks the model, or kept failing."""


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str | None


def api_keys(comparison: Comparison, sources: SourceMap) -> dict[str, str | None]:
    """Each endpoint's key from its environment variable; a RecipeError naming every variable that is not set."""
    keys: dict[str, str | None] = {}
    problems = []
    for name, spec in comparison.endpoints.items():
        if spec.api_key_env is None:
            keys[name] = None
            continue
        value = os.environ.get(spec.api_key_env, "")
        if not value.strip():
            problems.append(problem(sources, f"endpoints.{name}.api_key_env",
                                    f"the environment variable {spec.api_key_env} is not set; export it with the key "
                                    f"(export {spec.api_key_env}=...), or set api_key_env: null for a server that needs none"))
        keys[name] = value.strip()
    if problems:
        raise problems_error(sources, problems)
    return keys


class Endpoint:
    """One named OpenAI-compatible server: its client and the limit on requests in flight."""

    def __init__(self, name: str, spec: EndpointSpec, key: str | None):
        from openai import AsyncOpenAI

        self.name, self.spec, self._key = name, spec, key
        self.client = AsyncOpenAI(base_url=spec.base_url, api_key=key or NO_KEY, max_retries=spec.max_retries,
                                  timeout=spec.timeout)
        self.limit = asyncio.Semaphore(spec.concurrency)
        self._listed: list[str] | None = None  # the models GET /models lists; [] where it lists none

    async def chat(self, model: str, messages: list[dict[str, str]], *, where: str, **sampling) -> Reply:
        """One chat completion's text; an EndpointError once the retries are spent. ``where``: the key naming the model."""
        import openai

        async with self.limit:
            try:
                response = await self.client.chat.completions.create(model=model, messages=messages, **sampling)
            except openai.OpenAIError as err:
                raise EndpointError(self.explain(err, model, where) + RESUME) from None
            except ValueError as err:  # a 200 whose JSON is broken: the client's json.loads fails
                raise EndpointError(self._not_openai(model, "chat completion", err)) from None
        if not getattr(response, "choices", None):
            if not isinstance(response, BaseModel):
                raise EndpointError(self._not_openai(model, "chat completion", f"a {type(response).__name__}"))
            raise EndpointError(f"endpoint {self.name!r} ({self.spec.base_url}) answered model {model!r} with no choices; "
                                f"is it an OpenAI-compatible chat endpoint?")
        try:  # the client builds its types without validating them: a 200 from a proxy or a web page gets here as is
            choice = response.choices[0]
            text, finish_reason = choice.message.content, choice.finish_reason
        except (AttributeError, TypeError, IndexError, KeyError) as err:
            raise EndpointError(self._not_openai(model, "chat completion", err)) from None
        if not isinstance(text, (str, type(None))):
            raise EndpointError(self._not_openai(model, "chat completion", f"content is {type(text).__name__}"))
        return Reply(text or "", finish_reason)

    async def complete(self, model: str, prompt: str, *, where: str, **sampling) -> Reply:
        """One text completion (for a model without a chat template); an EndpointError once the retries are spent."""
        import openai

        async with self.limit:
            try:
                response = await self.client.completions.create(model=model, prompt=prompt, **sampling)
            except openai.OpenAIError as err:
                raise EndpointError(self.explain(err, model, where) + RESUME) from None
            except ValueError as err:  # a 200 whose JSON is broken: the client's json.loads fails
                raise EndpointError(self._not_openai(model, "completion", err)) from None
        if not getattr(response, "choices", None):
            if not isinstance(response, BaseModel):
                raise EndpointError(self._not_openai(model, "completion", f"a {type(response).__name__}"))
            raise EndpointError(f"endpoint {self.name!r} ({self.spec.base_url}) answered model {model!r} with no choices; "
                                f"is it an OpenAI-compatible completions endpoint?")
        try:
            choice = response.choices[0]
            text, finish_reason = choice.text, choice.finish_reason
        except (AttributeError, TypeError, IndexError, KeyError) as err:
            raise EndpointError(self._not_openai(model, "completion", err)) from None
        if not isinstance(text, (str, type(None))):
            raise EndpointError(self._not_openai(model, "completion", f"text is {type(text).__name__}"))
        return Reply(text or "", finish_reason)

    async def check_model(self, model: str, where: str) -> None:
        """Before any work: the server is reachable, takes the key, and lists the model (where it lists models at all)."""
        import openai

        if self._listed is None:
            quick = self.client.with_options(max_retries=1)
            try:
                listed = [getattr(m, "id", None) async for m in quick.models.list()]
                # a listing without model ids (not an OpenAI server, or an odd one) says nothing: the requests will tell
                self._listed = listed if all(isinstance(i, str) for i in listed) else []
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.APIConnectionError) as err:
                raise EndpointError(self.explain(err, model, where)) from None
            except (openai.OpenAIError, ValueError, AttributeError, TypeError):  # no /models here, busy, or not JSON:
                self._listed = []  # the requests themselves will tell
        listed = self._listed
        if listed and model not in listed:
            shown = ", ".join(sorted(listed)[:20]) + (", ..." if len(listed) > 20 else "")
            raise EndpointError(f"endpoint {self.name!r} ({self.spec.base_url}) serves no model {model!r} "
                                f"(it serves: {shown}); fix {where}")

    def explain(self, err: Exception, model: str, where: str) -> str:
        import openai

        at = f"endpoint {self.name!r} ({self.spec.base_url})"
        said = self._scrub(getattr(err, "message", None) or str(err))[:SHORT]
        if isinstance(err, openai.APITimeoutError):
            text = (f"{at} did not answer within {self.spec.timeout:g} s, {self.spec.max_retries} retries included; "
                    f"raise endpoints.{self.name}.timeout or lower its concurrency")
        elif isinstance(err, openai.APIConnectionError):
            cause = self._scrub(str(err.__cause__ or err))[:SHORT]
            text = (f"{at} cannot be reached ({cause}); is the server running (`qlorafx serve RUN_DIR ...` for qlorafx "
                    f"runs)? check endpoints.{self.name}.base_url")
        elif isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)):
            if self.spec.api_key_env:
                text = f"{at} refused the API key from ${self.spec.api_key_env} ({said}); check that key"
            else:
                text = (f"{at} wants an API key ({said}); put it in an environment variable and name that variable "
                        f"in endpoints.{self.name}.api_key_env")
        elif isinstance(err, openai.NotFoundError):
            text = (f"{at} has no model {model!r} ({said}); fix {where}, or the base_url if it misses its path "
                    f"(such as /v1)")
        elif isinstance(err, openai.RateLimitError):
            text = f"{at} still limits the rate after {self.spec.max_retries} retries ({said}); lower endpoints.{self.name}.concurrency"
        elif isinstance(err, openai.APIStatusError):
            text = f"{at} refused a request to model {model!r} with status {err.status_code} ({said})"
        else:
            text = f"{at} failed on model {model!r}: {said}"
        return text

    def _not_openai(self, model: str, kind: str, why: object) -> str:
        said = self._scrub(str(why))[:SHORT]
        return (f"endpoint {self.name!r} ({self.spec.base_url}) answered model {model!r} with a reply that is not an "
                f"OpenAI {kind} ({said}); is it an OpenAI-compatible server? check endpoints.{self.name}.base_url "
                f"(such as http://127.0.0.1:8000/v1)" + RESUME)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "<api key>") if self._key else text

    async def close(self) -> None:
        await self.client.close()
