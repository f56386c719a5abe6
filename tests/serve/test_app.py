"""The real server (uvicorn on a free 127.0.0.1 port) driven by the official `openai` client: models
with lineage; chat and completions, streamed and not, equal to `qlorafx generate` token for token;
concurrent requests answered in one mixed batch with the rows they get one by one; the client's
usual exceptions for unknown models, bad parameters and wrong keys; a client that goes away stops
its generation; adapters load and unload behind the flag. The server serves on after each."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest

from qlorafx.serve.app import create_app
from qlorafx.serve.server import ThreadedServer
from tests.infer.finished import generators, served_engine

KEY = "test-key-1234"
QUESTION = "What color is a leaf?"
CHAT = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return served_engine(tmp_path_factory)


@pytest.fixture(scope="module")
def server(engine):
    running = ThreadedServer(create_app(engine, api_key=KEY, allow_adapter_loading=True))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)



def still_serving(client) -> None:
    answer = client.completions.create(model="alpaca", prompt=QUESTION, max_tokens=2, temperature=0)
    assert answer.usage.completion_tokens == 2


def test_models_lists_the_base_and_each_adapter_with_its_lineage(client, engine):
    models = {m.id: m for m in client.models.list().data}
    assert list(models) == ["base_model", "alpaca", "chat"]
    assert models["base_model"].parent is None and models["base_model"].qlorafx["kind"] == "base"
    alpaca = models["alpaca"].qlorafx
    assert models["alpaca"].parent == "base_model"
    assert alpaca["format"] == "alpaca" and alpaca["run_dir"] == str(engine.get("alpaca").run.path)
    assert alpaca["base"].endswith("base_model") and alpaca["lora"]["r"] == 16
    assert models["chat"].qlorafx["format"] == "chat"
    assert client.models.retrieve("chat").id == "chat"


def test_each_adapter_answers_as_qlorafx_generate_does(client, tmp_path_factory):
    want = generators(tmp_path_factory)
    alpaca = client.completions.create(model="alpaca", prompt=QUESTION, max_tokens=12, temperature=0)
    assert alpaca.choices[0].text == want["alpaca"].answer([want["alpaca"].encode(QUESTION)])[0]
    chat = client.chat.completions.create(model="chat", messages=CHAT, max_tokens=12, temperature=0)
    assert chat.choices[0].message.content == want["chat"].answer([want["chat"].encode({"messages": CHAT})])[0]
    assert chat.choices[0].message.content != alpaca.choices[0].text
    assert chat.usage.completion_tokens == 12 and chat.choices[0].finish_reason == "length"
    assert chat.usage.prompt_tokens == len(want["chat"].encode({"messages": CHAT}).ids)


def test_streams_carry_the_same_answer_then_the_finish_reason_usage_and_done(client, server):
    whole = client.chat.completions.create(model="chat", messages=CHAT, max_tokens=10, temperature=0)
    chunks = list(client.chat.completions.create(model="chat", messages=CHAT, max_tokens=10, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # piece by piece

    completion = client.completions.create(model="alpaca", prompt=QUESTION, max_tokens=8, temperature=0)
    pieces = list(client.completions.create(model="alpaca", prompt=QUESTION, max_tokens=8, temperature=0, stream=True))
    assert "".join(p.choices[0].text for p in pieces) == completion.choices[0].text
    assert pieces[-1].choices[0].finish_reason == "length" and pieces[-1].usage is None

    raw = httpx.post(f"{server.url}/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                     json={"model": "alpaca", "prompt": QUESTION, "max_tokens": 3, "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.endswith("data: [DONE]\n\n")


def test_requests_arriving_together_share_one_batch_and_get_what_they_get_alone(client, engine):
    requests = [("alpaca", QUESTION), ("chat", QUESTION), ("base_model", QUESTION), ("chat", "Name a sound.")]

    def ask(model: str, prompt: str) -> str:
        if model == "chat":
            return client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                  max_tokens=10, temperature=0).choices[0].message.content
        return client.completions.create(model=model, prompt=prompt, max_tokens=10, temperature=0).choices[0].text

    alone = [ask(*request) for request in requests]
    answers: dict[int, str] = {}
    before = engine.scheduler.batches_run
    with engine.scheduler.model_lock:  # hold the model until every request waits for it
        threads = [threading.Thread(target=lambda i=i, r=r: answers.__setitem__(i, ask(*r)))
                   for i, r in enumerate(requests)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while engine.scheduler.pending() < len(requests) and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=60)
    assert engine.scheduler.batches_run == before + 1
    assert [answers[i] for i in range(len(requests))] == alone


def test_the_clients_usual_exceptions_and_the_server_serves_on(client, server):
    with pytest.raises(openai.NotFoundError, match="'nope' does not exist; this server serves: base_model, alpaca"):
        client.chat.completions.create(model="nope", messages=CHAT)
    still_serving(client)
    with pytest.raises(openai.BadRequestError, match="temperature: Input should be greater than or equal to 0"):
        client.chat.completions.create(model="chat", messages=CHAT, temperature=-1)
    with pytest.raises(openai.BadRequestError, match="'logprobs' is not supported"):
        client.chat.completions.create(model="chat", messages=CHAT, logprobs=True)
    with pytest.raises(openai.BadRequestError, match="format 'alpaca', which has no system turn"):
        client.chat.completions.create(model="alpaca", messages=[{"role": "system", "content": "x"}, *CHAT])
    still_serving(client)
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid or missing API key"):
        wrong.models.list()
    assert httpx.get(f"{server.url}/v1/models").status_code == 401  # no key at all
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"  # health needs none
    still_serving(client)


def test_a_stream_the_client_drops_stops_generating(server, recorded):
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "chat", "messages": CHAT, "max_tokens": 300, "temperature": 0, "stream": True},
                      timeout=60) as response:
        lines = response.iter_lines()
        while "content" not in json.loads(next(line for line in lines if line.startswith("data: "))[6:])[
                "choices"][0]["delta"]:
            pass
    # the connection is closed here, with hundreds of tokens still to come
    [row] = recorded
    assert row.result().finish_reason == "cancelled" and len(row.ids) < 300


def test_a_whole_answer_the_client_stops_waiting_for_stops_generating(server, recorded, client):
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5,
                   json={"model": "alpaca", "prompt": QUESTION, "max_tokens": 300, "temperature": 0})
    [row] = recorded
    assert row.result().finish_reason == "cancelled" and len(row.ids) < 300
    still_serving(client)


def test_n_choices_and_stop_strings(client):
    whole = client.completions.create(model="alpaca", prompt=[QUESTION, "Name a sound."], max_tokens=6,
                                      temperature=0, n=2)
    assert [c.index for c in whole.choices] == [0, 1, 2, 3]
    assert whole.choices[0].text == whole.choices[1].text  # greedy: the same answer twice
    text = whole.choices[0].text
    stop = text[2:4]
    cut = client.completions.create(model="alpaca", prompt=QUESTION, max_tokens=6, temperature=0, stop=[stop])
    assert cut.choices[0].text == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_adapters_load_and_unload_only_behind_the_flag(client, engine, tmp_path_factory):
    chat_run = str(engine.get("chat").run.path)
    closed = ThreadedServer(create_app(engine, api_key=KEY))
    try:
        with pytest.raises(openai.PermissionDeniedError, match="--allow-adapter-loading"):
            client.with_options(base_url=f"{closed.url}/v1").post(
                "/load_lora_adapter", body={"lora_name": "x", "lora_path": chat_run}, cast_to=object)
    finally:
        closed.stop()
    loaded = client.post("/load_lora_adapter", body={"lora_name": "chat-2", "lora_path": chat_run}, cast_to=object)
    assert loaded["model"]["id"] == "chat-2"
    want = client.chat.completions.create(model="chat", messages=CHAT, max_tokens=6, temperature=0)
    got = client.chat.completions.create(model="chat-2", messages=CHAT, max_tokens=6, temperature=0)
    assert got.choices[0].message.content == want.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="no such directory; give the output_dir of a finished"):
        client.post("/load_lora_adapter", body={"lora_name": "y", "lora_path": "/nonexistent"}, cast_to=object)
    client.post("/unload_lora_adapter", body={"lora_name": "chat-2"}, cast_to=object)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="chat-2", messages=CHAT, max_tokens=2)
    assert [m.id for m in client.models.list().data] == ["base_model", "alpaca", "chat"]


SECRET = "sk-live-0123456789 in /home/alice/private/model.bin"


def _generic_500(err: openai.InternalServerError, caplog) -> str:
    """The body says nothing of the exception (no message, no path, no class), only an id; the server's log
    has that id beside the full traceback, for whoever runs the server."""
    body = err.response.json()["error"]
    assert body["type"] == "server_error" and body["code"] == "internal_error" and body["param"] is None
    assert SECRET not in err.response.text and "RuntimeError" not in err.response.text
    incident = body["message"].split("error id ")[1].split(")")[0]
    assert body["message"] == (f"the server failed to answer this request (error id {incident}); "
                               "its log has the details under that id")
    logged = [r for r in caplog.records if incident in r.getMessage()]
    assert logged and logged[0].exc_info and SECRET in str(logged[0].exc_info[1])
    return incident


def test_an_unexpected_error_is_a_generic_500_with_an_id_the_server_logs(client, engine, monkeypatch, caplog):
    """Before: the body was 'internal error: RuntimeError: <the exception's message>', paths and secrets included."""
    def broken(*args, **kwargs):
        raise RuntimeError(SECRET)

    with monkeypatch.context() as patched:
        patched.setattr(engine, "submit", broken)
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model="chat", messages=CHAT, max_tokens=2)
    first = _generic_500(raised.value, caplog)
    with monkeypatch.context() as patched:
        patched.setattr(engine, "submit", broken)
        with pytest.raises(openai.InternalServerError) as raised:
            client.completions.create(model="alpaca", prompt=QUESTION, max_tokens=2)
    assert _generic_500(raised.value, caplog) != first  # one id per failure
    still_serving(client)


def test_a_failed_generation_is_a_generic_500_with_an_id_the_server_logs(client, monkeypatch, caplog):
    from qlorafx.infer import batching

    def out_of_memory(model, batch):
        raise RuntimeError(SECRET)

    with monkeypatch.context() as patched:
        patched.setattr(batching, "generate_rows", out_of_memory)
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model="chat", messages=CHAT, max_tokens=2)
        _generic_500(raised.value, caplog)
        stream = client.chat.completions.create(model="chat", messages=CHAT, max_tokens=2, stream=True)
        with pytest.raises(openai.APIError) as streamed:
            list(stream)
    assert SECRET not in str(streamed.value) and "error id " in str(streamed.value)
    still_serving(client)
