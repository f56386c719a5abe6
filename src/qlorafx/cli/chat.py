"""qlorafx chat RUN_DIR [sampling options] [--json]: multi-turn chat on stdin/stdout, rendered as the run trained.

A terminal front end of infer.chat.ChatSession, which owns the history, the run's template and
their limits: each line read is a user message; the answer is printed when it is complete.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qlorafx.cli.generate import add_sampling_arguments, note_unused_sampling, sampling

RESET = "/reset"
QUIT = ("/quit", "/exit")
HELP = "/help"
# the lines chat answers itself, in any case (/QUIT with caps lock on must not go to the model);
# any other line, one starting with '/' included, is a message to the model
COMMANDS = f"{RESET} clears the history, {' or '.join(QUIT)} (or Ctrl-D) ends, {HELP} shows this"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "chat", help="chat with a finished run's model on stdin/stdout, with the run's template",
        description="Interactive multi-turn chat: each line on stdin is a user message; the history is rendered "
                    f"with the format and template the run trained with. {COMMANDS}.")
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the output_dir of a finished run")
    add_sampling_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per answer: {prompt (the whole rendered prompt), output}")
    parser.set_defaults(run=run)


def run(args) -> int:
    from qlorafx.infer.chat import ChatSession, check_chattable
    from qlorafx.infer.generate import Generator
    from qlorafx.report.run import trained_run

    options = sampling(args)
    note_unused_sampling(args)
    found = trained_run(args.run_dir)
    check_chattable(found)  # before torch is imported

    from qlorafx.train.quiet import quiet_libraries

    quiet_libraries()
    generator = Generator(found, options)
    session = ChatSession.of(generator)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chat with {found.path} (format {found.dataset.format}); {COMMANDS}", file=sys.stderr)
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        message = line.rstrip("\r\n")
        if not message.strip():
            continue
        command = message.strip().lower()
        if command == RESET:
            session.reset()
            continue
        if command in QUIT:
            break
        if command == HELP:
            print(COMMANDS, file=sys.stderr)
            continue
        prompt = session.prompt(message)
        for _ in range(prompt.dropped):
            print(f"(dropped the oldest exchange: {session.limit()})", file=sys.stderr)
        answer = generator.answer([prompt.encoded])[0]
        session.add(message, answer)
        if args.json:
            print(json.dumps({"prompt": prompt.encoded.text, "output": answer}, ensure_ascii=False), flush=True)
        else:
            print(answer, flush=True)
    return 0
