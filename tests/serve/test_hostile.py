"""Hostile requests against the real server: each gets a 4xx with an OpenAI error body whose message
says what is wrong, never a 500, and the server answers normally afterwards."""

from __future__ import annotations

import httpx
import pytest

from qlorafx.serve.app import create_app
from qlorafx.serve.server import ThreadedServer
from tests.infer.finished import served_engine

CHAT = [{"role": "user", "content": "What color is a leaf?"}]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    running = ThreadedServer(create_app(served_engine(tmp_path_factory)))
    yield running.url
    running.stop()


def chat(**fields) -> dict:
    return {"model": "chat", "messages": CHAT, "max_tokens": 2, **fields}


CASES = [
    # (id, path, body (bytes are sent as they are), status, words the message must hold)
    ("malformed JSON", "/v1/chat/completions", b'{"model": "chat", "messages": [', 400, "not valid JSON"),
    ("not an object", "/v1/chat/completions", b"[1, 2]", 400, "must be a JSON object, found list"),
    ("non-UTF-8", "/v1/chat/completions", b'{"model": "chat", "messages": "\xff\xfe"}', 400, "not UTF-8"),
    ("empty body", "/v1/completions", b"", 400, "not valid JSON"),
    ("empty messages", "/v1/chat/completions", chat(messages=[]), 400, "messages: List should have at least 1 item"),
    ("no model", "/v1/chat/completions", {"messages": CHAT}, 400, "model: required"),
    ("unknown model", "/v1/chat/completions", chat(model="gpt-4"), 404, "'gpt-4' does not exist"),
    ("unknown field", "/v1/chat/completions", chat(max_token=5), 400, "max_token: unknown field"),
    ("huge max_tokens", "/v1/chat/completions", chat(max_tokens=10**9), 400,
     "the model has 512 positions; ask for at most"),
    ("zero max_tokens", "/v1/completions", {"model": "alpaca", "prompt": "x", "max_tokens": 0}, 400,
     "max_tokens: Input should be greater than or equal to 1"),
    ("negative temperature", "/v1/chat/completions", chat(temperature=-0.5), 400,
     "temperature: Input should be greater"),
    ("temperature NaN", "/v1/chat/completions",
     b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
     400, "temperature: Input should be"),
    ("top_p 0", "/v1/chat/completions", chat(top_p=0), 400, "top_p: Input should be greater than 0"),
    ("unknown role", "/v1/chat/completions", chat(messages=[{"role": "wizard", "content": "x"}]), 400,
     "messages[0].role is 'wizard'; expected one of system, user, assistant"),
    ("content not text", "/v1/chat/completions", chat(messages=[{"role": "user", "content": 5}]), 400,
     "messages[0].content must be a string or a list of text parts"),
    ("message not an object", "/v1/chat/completions", chat(messages=["hi"]), 400, "messages[0] must be an object"),
    ("ends with assistant", "/v1/chat/completions", chat(messages=[*CHAT, {"role": "assistant", "content": "x"}]), 400,
     "must be the user's"),
    ("token-id prompt", "/v1/completions", {"model": "alpaca", "prompt": [1, 2, 3]}, 400,
     "prompt: prompts given as token ids are not supported"),
    ("empty prompt list", "/v1/completions", {"model": "alpaca", "prompt": []}, 400, "give a prompt"),
    ("too many choices", "/v1/chat/completions", chat(n=1000), 400, "n: Input should be less than or equal to 16"),
    ("five stop strings", "/v1/chat/completions", chat(stop=list("abcde")), 400, "at most 4 non-empty stop strings"),
    ("tools", "/v1/chat/completions", chat(tools=[{"type": "function"}]), 400, "'tools' is not supported"),
    ("wrong type", "/v1/chat/completions", chat(stream="yes please"), 400, "stream: Input should be a valid boolean"),
    ("a 1.5 MB prompt", "/v1/completions", {"model": "alpaca", "prompt": "x" * 1_500_000}, 400,
     "the model has 512 positions"),
    ("unknown endpoint", "/v1/embeddings", chat(), 404, "no such endpoint: POST /v1/embeddings"),
    ("adapter loading off", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "/tmp"}, 403,
     "--allow-adapter-loading"),
]


@pytest.mark.parametrize("path, body, status, words", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_hostile_request_gets_a_clear_4xx_and_the_server_serves_on(url, path, body, status, words):
    content = body if isinstance(body, bytes) else None
    response = httpx.post(f"{url}{path}", content=content, json=None if content is not None else body,
                          headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["type"] == "invalid_request_error"
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200


def test_a_10_mb_body_is_refused_and_a_get_on_a_post_endpoint_is_named(url):
    response = httpx.post(f"{url}/v1/chat/completions", content=b'{"model": "' + b"x" * (10 << 20) + b'"}', timeout=60)
    assert response.status_code == 413 and "over 2 MiB" in response.json()["error"]["message"]
    response = httpx.get(f"{url}/v1/chat/completions", timeout=10)
    assert response.status_code == 405 and "GET /v1/chat/completions" in response.json()["error"]["message"]
    answer = httpx.post(f"{url}/v1/chat/completions", json=chat(temperature=0), timeout=60)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 2
