"""Endpoints that fail: a clear message and exit code 2, no traceback, the key never shown, nothing
half-written; retries with back-off that get through a server's passing errors."""

from __future__ import annotations

import json
import socket

from qlorafx.cli.main import main
from tests.judge.conftest import write_comparison

KEY = "sk-fake-0123456789abcdef"


def fails(capsys, path, *overrides) -> str:
    assert main(["judge", str(path), *overrides]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/v1"


def test_an_unreachable_endpoint(tmp_path, capsys):
    url = closed_port_url()
    err = fails(capsys, write_comparison(tmp_path, url))
    assert f"error: endpoint 'fake' ({url}) cannot be reached (" in err
    assert "is the server running (`qlorafx serve RUN_DIR ...` for qlorafx runs)? check endpoints.fake.base_url" in err
    assert not (tmp_path / "out" / "results.json").exists() and not (tmp_path / "out" / "report.md").exists()


def test_a_bad_key_is_refused_and_never_shown(server, tmp_path, capsys, monkeypatch):
    server.api_key = "the-right-key"
    monkeypatch.setenv("FAKE_KEY", KEY)
    path = write_comparison(tmp_path, server.url)
    path.write_text(path.read_text().replace("max_retries: 0}", "max_retries: 0, api_key_env: FAKE_KEY}"))
    err = fails(capsys, path)
    assert f"error: endpoint 'fake' ({server.url}) refused the API key from $FAKE_KEY (" in err and "check that key" in err
    assert "Incorrect API key provided: <api key>" in err  # the server echoed it; the message does not
    assert KEY not in err
    assert not server.contestant_requests()  # found before any paid request


def test_a_key_that_is_not_set_is_named_before_any_request(server, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FAKE_KEY", raising=False)
    path = write_comparison(tmp_path, server.url)
    path.write_text(path.read_text().replace("max_retries: 0}", "max_retries: 0, api_key_env: FAKE_KEY}"))
    err = fails(capsys, path)
    assert f"endpoints.fake.api_key_env ({path}:4): the environment variable FAKE_KEY is not set; export it" in err
    assert server.log == []


def test_no_key_named_sends_none_of_the_environments(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # meant for another server: never sent to this one
    assert main(["judge", str(write_comparison(tmp_path, server.url, contestants=("short", "long"), questions=1))]) == 0
    assert server.log and all(KEY not in (r.key or "") for r in server.log)


def test_a_model_the_endpoint_does_not_serve(server, tmp_path, capsys):
    path = write_comparison(tmp_path, server.url)
    err = fails(capsys, path, "contestants.1.model=mediun")
    assert f"error: endpoint 'fake' ({server.url}) serves no model 'mediun' (it serves: first, garbage, long, " in err
    assert err.rstrip().endswith("fix contestants.1.model")
    err = fails(capsys, path, "judge.model=gpt-5")
    assert "serves no model 'gpt-5'" in err and err.rstrip().endswith("fix judge.model")
    assert server.log == []  # the listing caught both before any answer was asked for


def test_a_404_on_the_request_itself(server, tmp_path, capsys):
    import asyncio

    from qlorafx.judge.client import Endpoint, EndpointError
    from qlorafx.judge.spec import EndpointSpec

    async def ask():
        endpoint = Endpoint("fake", EndpointSpec(base_url=server.url, max_retries=0), None)
        try:
            await endpoint.chat("nope", [{"role": "user", "content": "hi"}], where="contestants.0.model", max_tokens=5)
        finally:
            await endpoint.close()

    try:
        asyncio.run(ask())
    except EndpointError as err:
        message = str(err)
    assert f"endpoint 'fake' ({server.url}) has no model 'nope' (Error code: 404" in message
    assert "fix contestants.0.model, or the base_url if it misses its path (such as /v1)" in message


def test_passing_server_errors_are_retried_with_back_off(server, tmp_path):
    path = write_comparison(tmp_path, server.url, contestants=("short", "long"), questions=1)
    path.write_text(path.read_text().replace("max_retries: 0", "max_retries: 2, concurrency: 1"))
    server.fail_next(2, 503)
    assert main(["judge", str(path)]) == 0
    assert len(server.log) == 2 + 2 + 2  # two failed tries, then 2 answers and 2 judgments
    assert json.loads((tmp_path / "out" / "results.json").read_text())["counts"]["judgments"] == 2


def test_errors_that_outlast_the_retries_stop_with_the_work_kept(server, tmp_path, capsys):
    path = write_comparison(tmp_path, server.url, contestants=("short", "long"), questions=2)
    path.write_text(path.read_text().replace("max_retries: 0", "max_retries: 1, concurrency: 1"))
    assert main(["judge", str(path), "judge.model=first", "judge.both_orders=false"]) == 0  # caches the 4 answers
    server.fail_next(2, 429)
    err = fails(capsys, path)  # the longer judge: new judgments, and the first is refused twice
    assert "still limits the rate after 1 retries" in err and "lower endpoints.fake.concurrency" in err
    assert "the answers and judgments received so far are cached: rerun to resume" in err
    assert len(server.contestant_requests()) == 4
    assert main(["judge", str(path)]) == 0  # resumes: no answer asked for again
    assert len(server.contestant_requests()) == 4


def test_the_concurrency_limit_holds(server, tmp_path):
    path = write_comparison(tmp_path, server.url, contestants=("short", "long"), questions=6)
    path.write_text(path.read_text().replace("max_retries: 0", "max_retries: 0, concurrency: 3"))
    server.delay_s = 0.05  # long enough for requests to pile up
    assert main(["judge", str(path)]) == 0
    assert len(server.log) == 12 + 12 and server.most_in_flight == 3
