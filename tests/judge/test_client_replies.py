"""An endpoint that answers 200 with something that is not an OpenAI response (a proxy's HTML page,
broken JSON, a choice without its message, a model listing without ids): exit code 2 with a message
naming the endpoint, never a traceback, nothing written but the cache."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qlorafx.cli.main import main
from tests.judge.conftest import write_comparison

MODELS = json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in ("short", "medium", "long", "longer")]})
NULL_MESSAGE = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "short",
                           "choices": [{"index": 0, "message": None, "finish_reason": "stop"}]})
REPLIES = {  # what POST answers, with status 200
    "html": ("text/html", "<html><body>Please log in</body></html>"),
    "broken_json": ("application/json", "{not json"),
    "null_message": ("application/json", NULL_MESSAGE),
}


def serve(post: tuple[str, str] | None, models: str = MODELS):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, ctype: str, body: str) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.send("application/json", models)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send(*post)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # a request the client dropped (the comparison stops at the first failure): not this test's output

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


@pytest.mark.parametrize("kind", sorted(REPLIES))
def test_a_reply_that_is_not_an_openai_response(kind, tmp_path, capsys):
    server, url = serve(REPLIES[kind])
    try:
        assert main(["judge", str(write_comparison(tmp_path, url))]) == 2
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"error: endpoint 'fake' ({url}) answered model 'short' with a reply that is not an OpenAI chat completion" in err
    assert "check endpoints.fake.base_url" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cache.sqlite"]


def test_a_model_listing_without_ids_is_not_read(tmp_path, capsys):
    """A /models reply whose entries lack an id says nothing about the models: the requests themselves tell."""
    server, url = serve(("text/html", "<html></html>"), models=json.dumps({"data": [{"nope": 1}]}))
    try:
        assert main(["judge", str(write_comparison(tmp_path, url))]) == 2
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "answered model 'short' with a reply that is not an OpenAI chat completion" in err
