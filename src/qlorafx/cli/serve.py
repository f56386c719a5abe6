"""qlorafx serve [NAME=]RUN_DIR [...] [--host H] [--port P] [--api-key-env VAR] [--allow-adapter-loading] [--ui]:
the OpenAI-compatible HTTP API for one 4-bit base and every run's adapter on it; with --ui, the web chat
page beside it on the same app and engine (one model in memory)."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from importlib.util import find_spec
from pathlib import Path

from qlorafx.errors import UserError


class ServeError(UserError):
    """An option or a set-up that serve cannot start with."""


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "serve", help="serve finished runs' adapters on their one base over the OpenAI HTTP API",
        description="Load the runs' base once in 4-bit, as they trained it, and each run's adapter onto it; answer "
                    "OpenAI-style /v1/chat/completions and /v1/completions requests (streamed or not), where the "
                    "request's model picks the adapter (or the base), batching requests that arrive together. "
                    "Needs the serve extra: pip install 'qlorafx[serve]'.")
    parser.add_argument("run_dirs", nargs="+", metavar="[NAME=]RUN_DIR",
                        help="a finished run to serve; its model name is the folder's name unless NAME= gives one")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--api-key-env", metavar="VAR",
                        help="require the key held in this environment variable (Authorization: Bearer KEY)")
    parser.add_argument("--allow-adapter-loading", action="store_true",
                        help="enable /v1/load_lora_adapter and /v1/unload_lora_adapter (off by default)")
    parser.add_argument("--max-batch", type=int, default=16, metavar="N",
                        help="most rows answered in one batched generate (default 16)")
    parser.add_argument("--batch-wait-ms", type=float, default=50.0, metavar="MS",
                        help="how long the first waiting request waits for others to join its batch (default 50)")
    parser.add_argument("--default-max-tokens", type=int, default=256, metavar="N",
                        help="new tokens when a request gives no max_tokens (default 256, less where the "
                             "model's positions run out)")
    parser.add_argument("--ui", action="store_true",
                        help="also serve the web chat page at /ui on the same engine: chat, side by side, answers "
                             "kept as training data (needs the ui extra: pip install 'qlorafx[ui]')")
    parser.add_argument("--keep", metavar="FILE.jsonl", type=Path, default=Path("chats.jsonl"),
                        help="with --ui: the file the page's 'Keep as data' appends conversations to, in the chat "
                             "format qlorafx train reads (default chats.jsonl in the current folder)")
    parser.set_defaults(run=run)


def named_runs(items: list[str]) -> tuple[list[Path], list[str | None]]:
    paths, names = [], []
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name and not Path(item).exists():
            paths.append(Path(path))
            names.append(name)
        else:
            paths.append(Path(item))
            names.append(None)
    return paths, names


def api_key(var: str | None) -> str | None:
    if var is None:
        return None
    key = os.environ.get(var, "")
    if not key.strip():
        raise ServeError(f"--api-key-env {var}: the environment variable {var} is not set or empty; "
                         f"export {var}=... with the key clients must send")
    return key


def check_address(host: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise ServeError(f"--port must be between 0 and 65535, got {port}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        raise ServeError(f"cannot listen on {host}:{port}: {err.strerror}; choose another --port or --host") from None


def check_ui(args):
    """--ui's needs, before any weight loads: gradio, and a file the page can keep conversations in."""
    if find_spec("gradio") is None:
        raise ServeError("--ui needs gradio: pip install 'qlorafx[ui]'")
    from qlorafx.serve.kept import KeptChats

    kept = KeptChats(args.keep)
    kept.check_writable()
    return kept


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args) -> int:
    missing = [name for name in ("fastapi", "uvicorn") if find_spec(name) is None]
    if missing:
        raise ServeError(f"qlorafx serve needs {' and '.join(missing)}: pip install 'qlorafx[serve]'")
    for option, value in (("--max-batch", args.max_batch), ("--default-max-tokens", args.default_max_tokens)):
        if value < 1:
            raise ServeError(f"{option} must be at least 1, got {value}")
    if not 0 <= args.batch_wait_ms <= 10_000:
        raise ServeError(f"--batch-wait-ms must be between 0 and 10000, got {args.batch_wait_ms}")
    key = api_key(args.api_key_env)
    kept = check_ui(args) if args.ui else None
    check_address(args.host, args.port)
    if not is_loopback(args.host) and key is None:
        print(f"warning: listening on {args.host} without an API key: anyone who can reach this port can use the "
              f"models; give --api-key-env VAR", file=sys.stderr)

    from qlorafx.infer.engine import Engine, check_runs

    paths, names = named_runs(args.run_dirs)
    check_runs(paths, names)  # every refusal before weights load
    print(f"loading the base and {len(paths)} adapter(s)", file=sys.stderr)
    engine = Engine.load(paths, names, max_batch=args.max_batch, gather_s=args.batch_wait_ms / 1000)

    from qlorafx.serve.app import create_app
    from qlorafx.serve.server import uvicorn_server

    app = create_app(engine, api_key=key, allow_adapter_loading=args.allow_adapter_loading,
                     default_max_tokens=args.default_max_tokens)
    if args.ui:
        from qlorafx.serve.page import mount_page
        from qlorafx.serve.webchat import Options, WebChat

        mount_page(app, WebChat(engine, kept, Options(max_new_tokens=args.default_max_tokens)), api_key=key)
    models = ", ".join(m.name for m in engine.models())
    print(f"serving {models} at http://{args.host}:{args.port}/v1", file=sys.stderr)
    if args.ui:
        print(f"chat page at http://{args.host}:{args.port}/ui/ (kept conversations go to {kept.path})",
              file=sys.stderr)
    try:
        uvicorn_server(app, args.host, args.port).run()
    finally:
        engine.close()
    return 0
