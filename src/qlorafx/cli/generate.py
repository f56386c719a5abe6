"""qlorafx generate RUN_DIR (--prompt TEXT | --file prompts.jsonl) [sampling options] [--out OUT.jsonl]."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qlorafx.run_files import ADAPTER_DIR


def add_sampling_arguments(parser) -> None:
    """Decoding options shared by generate and chat; checked before any weight loads."""
    parser.add_argument("--max-new-tokens", type=int, default=128, metavar="N",
                        help="most tokens to generate per answer (default 128)")
    parser.add_argument("--temperature", type=float, default=0.0, metavar="T",
                        help="0 (the default): greedy, deterministic; above 0: sample at this temperature")
    parser.add_argument("--top-p", type=float, default=1.0, metavar="P",
                        help="when sampling: keep the smallest set of tokens with probability >= P (0 < P <= 1; 1: all)")
    parser.add_argument("--top-k", type=int, default=0, metavar="K",
                        help="when sampling: keep the K most likely tokens (0, the default: all)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed for sampling (default 0)")


def sampling(args):
    from qlorafx.infer.generate import Sampling

    return Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                    top_k=args.top_k, seed=args.seed).check()


def note_unused_sampling(args) -> None:
    if args.temperature == 0 and (args.top_p != 1.0 or args.top_k != 0):
        print("note: --top-p and --top-k apply when sampling (--temperature above 0); greedy decoding ignores them",
              file=sys.stderr)


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "generate", help="answer prompts with a finished run's model, rendered as the run trained; writes JSONL",
        description="Load a finished run's quantized base and adapter, render each prompt with the format and "
                    "template the run trained with, generate in left-padded batches, and write one JSON object "
                    "per prompt: {prompt, output}.")
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the output_dir of a finished run")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", metavar="TEXT",
                        help="a prompt: the user turn of the run's format (repeat for several)")
    source.add_argument("--file", type=Path, metavar="PROMPTS.jsonl",
                        help="one prompt per line: a JSON string, or a record of the run's format without its "
                             "response (alpaca: {\"instruction\": ..., \"input\": ...})")
    add_sampling_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=8, metavar="B", help="prompts per forward pass (default 8)")
    parser.add_argument("--out", type=Path, metavar="OUT.jsonl", help="write the JSONL here (default: stdout)")
    parser.set_defaults(run=run)


def _exists(out: Path) -> GenerateError:
    from qlorafx.infer.prompt import GenerateError

    return GenerateError(f"--out {out} already exists; generate never overwrites a file: give a new name, or remove "
                         "it first")


def _check_out(out: Path) -> None:
    """--out can be written, found before any weight loads (it was a traceback after generating): made and
    removed again, so a run that fails later leaves no empty file behind to refuse the next one."""
    from qlorafx.infer.prompt import GenerateError

    if out.exists():
        raise _exists(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "x", encoding="utf-8"):
            pass
        out.unlink()
    except FileExistsError:
        raise _exists(out) from None
    except OSError as err:
        raise GenerateError(f"--out {out} cannot be written ({err.strerror or err}); give a path in a folder you can "
                            "write to") from None


def run(args) -> int:
    from qlorafx.infer import generate
    from qlorafx.infer.prompt import GenerateError, conversation, read_prompts
    from qlorafx.report.run import trained_run

    options = sampling(args)  # every refusal comes before torch is imported
    if args.batch_size < 1:
        raise GenerateError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.out is not None and args.out.is_dir():
        raise GenerateError(f"--out {args.out} is a folder; give a file name, e.g. {args.out / 'out.jsonl'}")
    if args.out is not None:
        _check_out(args.out)
    note_unused_sampling(args)
    found = trained_run(args.run_dir)
    prompts = args.prompt if args.prompt is not None else read_prompts(args.file)
    for index, prompt in enumerate(prompts):
        try:
            conversation(found.dataset, prompt)
        except GenerateError as err:
            where = f"{args.file}:{index + 1}" if args.file else f"--prompt {index + 1}"
            raise GenerateError(f"{where}: {err}") from None

    from qlorafx.train.quiet import quiet_libraries

    quiet_libraries()
    generator = generate.Generator(found, options)
    encoded = [generator.encode(prompt) for prompt in prompts]  # templates applied before weights load
    print(f"generating {len(prompts)} answer(s) with {found.base} + {found.path / ADAPTER_DIR}", file=sys.stderr)
    try:  # "x": a file that appeared while the model loaded is not overwritten either
        out = open(args.out, "x", encoding="utf-8") if args.out is not None else sys.stdout
    except FileExistsError:
        raise _exists(args.out) from None
    try:
        for start in range(0, len(prompts), args.batch_size):
            chunk = slice(start, start + args.batch_size)
            for prompt, answer in zip(prompts[chunk], generator.answer(encoded[chunk], args.batch_size)):
                out.write(json.dumps({"prompt": prompt, "output": answer}, ensure_ascii=False) + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    if args.out is not None:
        print(f"wrote {len(prompts)} answer(s) to {args.out}", file=sys.stderr)
    return 0
