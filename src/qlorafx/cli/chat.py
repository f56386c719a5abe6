"""qlorafx chat RUN_DIR [sampling options] [--json]: multi-turn chat on stdin/stdout, rendered as the run trained.

Each line read is a user message; the answer is printed when it is complete. The history is kept
as turns in the run's format: a chat run renders them with its chat template, a guanaco/oasst run
as '### Human: ...### Assistant: ...' turns, and the other text formats (alpaca, self_instruct,
template) apply their template to every user message and join the exchanges as training joins
turns (the tokenizer's EOS after each answer). When the history no longer fits the model's
positions (max_position_embeddings) with room for an answer, the oldest exchanges are dropped; an
encoder-decoder (T5) writes its answer with the decoder, so only the history must fit its encoder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qlorafx.cli.generate import add_sampling_arguments, note_unused_sampling, sampling

RESET = "/reset"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "chat", help="chat with a finished run's model on stdin/stdout, with the run's template",
        description="Interactive multi-turn chat: each line on stdin is a user message; the history is rendered "
                    f"with the format and template the run trained with. {RESET} clears the history; end of input "
                    "(Ctrl-D) ends.")
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the output_dir of a finished run")
    add_sampling_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per answer: {prompt (the whole rendered prompt), output}")
    parser.set_defaults(run=run)


def run(args) -> int:
    from qlorafx.infer import generate

    options = sampling(args)
    note_unused_sampling(args)
    found = generate.open_run(args.run_dir)
    if found.dataset.format == "completion":
        raise generate.GenerateError(f"{found.path} trained on format 'completion' (plain text, no turns), so there "
                                     f"is nothing to chat in; use qlorafx generate {found.path} --prompt TEXT to "
                                     f"continue a text")
    generate.conversation(found.dataset, "hello")  # a template run that a message cannot fill is refused here

    from qlorafx.train.quiet import quiet_libraries

    quiet_libraries()
    generator = generate.Generator(found, options)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chat with {found.path} (format {found.dataset.format}); {RESET} clears the history, "
              f"Ctrl-D ends", file=sys.stderr)
    history: list[tuple[str, str]] = []
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        message = line.rstrip("\r\n")
        if not message.strip():
            continue
        if message.strip() == RESET:
            history = []
            continue
        encoded = generator.encode(message, history)
        limit = generator.context_length()
        answer_room = 0 if found.encoder_decoder else options.max_new_tokens  # a T5 answer is the decoder's
        while history and len(encoded.ids) + answer_room > limit:
            history.pop(0)
            needs = f"the history and an answer of {answer_room} tokens" if answer_room else "the history"
            print(f"(dropped the oldest exchange: {needs} must fit the model's {limit} positions)", file=sys.stderr)
            encoded = generator.encode(message, history)
        answer = generator.answer([encoded])[0]
        history.append((message, answer))
        if args.json:
            print(json.dumps({"prompt": encoded.text, "output": answer}, ensure_ascii=False), flush=True)
        else:
            print(answer, flush=True)
    return 0
