"""uvicorn running the app: in the foreground for ``qlorafx serve``, or on a thread (tests, the bench)."""

from __future__ import annotations

import threading
import time


def uvicorn_server(app, host: str, port: int, log_level: str = "info"):
    import uvicorn

    # timeout_graceful_shutdown: Ctrl-C waits this long for open streams, then closes them
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                         timeout_graceful_shutdown=3, access_log=log_level == "info"))


class ThreadedServer:
    """The real server on a free loopback port, on a background thread; ``url`` is its address."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.server = uvicorn_server(app, host, port, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, name="qlorafx-serve", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {host}:{port}")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
