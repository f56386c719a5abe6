"""qlorafx eval RUN_DIR [--data PATH [--format NAME]] [--mc FILE]: loss, perplexity, multiple choice.

Without --data, the loss is on the run's own validation split (rebuilt from its recipe and
seed). --mc scores a JSONL of {question, choices, answer} by the answer letters' logits.
Results are appended to the run's metrics.jsonl and run.json, and the report is rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path

from qlorafx.errors import UserError


def add_parser(commands) -> None:
    parser = commands.add_parser("eval", help="loss, perplexity and multiple-choice accuracy of a finished run")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the output_dir of a finished `qlorafx train`")
    parser.add_argument("--data", metavar="PATH", help="evaluate the loss on this dataset instead of the validation split")
    parser.add_argument("--format", default=None, metavar="NAME", help="format of --data (default: the run's first dataset's)")
    parser.add_argument("--chat-template", default=None, metavar="NAME",
                        help="with a chat --format: the named template to render --data with (default: the run's "
                             "tokenizer's own, or the run's dataset's)")
    parser.add_argument("--mc", metavar="FILE", help="JSONL of {question, choices, answer} for multiple-choice accuracy")
    parser.add_argument("--no-loss", action="store_true", help="skip the loss (with --mc: accuracy only)")
    parser.set_defaults(run=run)


def _dataset(args, recipe):
    """The dataset section for --data, checked before any weight loads."""
    from qlorafx.data.formats import FORMATS
    from qlorafx.data.sources import is_hub

    name = args.format or recipe.data.datasets[0].format
    if name not in FORMATS:
        raise UserError(f"--format {name!r}: expected one of {', '.join(FORMATS.keys())}")
    path = args.data if is_hub(args.data) else str(Path(args.data).resolve())
    if not is_hub(args.data) and not Path(path).exists():
        raise UserError(f"--data {args.data}: not found")
    if FORMATS.get(name).section.model_fields.get("prompt") is not None:  # the template format needs its templates
        same = [d for d in recipe.data.datasets if d.format == name]
        if not same:
            raise UserError("--format template needs the run to have trained on a template dataset (its templates)")
        return same[0].model_copy(update={"path": path})
    return FORMATS.get(name).section(path=path, format=name, **_chat_template(args, recipe, name))


def _chat_template(args, recipe, name: str) -> dict:
    """A chat format's template: --chat-template, else the run's own (its dataset's named one, or its
    tokenizer's); without one, the data cannot be rendered, which is said before any weight loads."""
    from qlorafx.data.chat_templates import CHAT_TEMPLATES
    from qlorafx.data.formats import FORMATS
    from qlorafx.run_files import TOKENIZER_DIR

    if "chat_template" not in FORMATS.get(name).section.model_fields:
        if args.chat_template:
            raise UserError(f"--chat-template applies to a chat --format; {name!r} renders its own prompts")
        return {}
    if args.chat_template:
        if args.chat_template not in CHAT_TEMPLATES:
            raise UserError(f"--chat-template {args.chat_template!r}: expected one of {', '.join(CHAT_TEMPLATES.keys())}")
        return {"chat_template": args.chat_template}
    named = [d.chat_template for d in recipe.data.datasets if getattr(d, "chat_template", None)]
    if named:
        return {"chat_template": named[0]}
    tokenizer = Path(args.run_dir) / TOKENIZER_DIR
    config = tokenizer / "tokenizer_config.json"
    own = (tokenizer / "chat_template.jinja").is_file() or (
        config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    if not own:
        raise UserError(f"--format {name} renders --data with a chat template, and the run's tokenizer has none (it "
                        f"trained on {recipe.data.datasets[0].format} prompts); add --chat-template NAME, one of "
                        f"{', '.join(CHAT_TEMPLATES.keys())}")
    return {}


def run(args) -> int:
    from qlorafx.evaluate.choice import read_questions
    from qlorafx.report.run import trained_run
    from qlorafx.run_files import FINISHED_MARKER, METRICS_FILE, TOKENIZER_DIR

    trained = trained_run(Path(args.run_dir))
    recipe = trained.recipe
    dataset = _dataset(args, recipe) if args.data else None
    questions = read_questions(Path(args.mc)) if args.mc else None
    if args.no_loss and not questions:
        raise UserError("--no-loss leaves nothing to evaluate; add --mc FILE")
    if not args.no_loss and dataset is None and not recipe.data.val_size:
        raise UserError(f"{args.run_dir} trained without a validation split (data.val_size 0); give --data PATH")

    from qlorafx.train.quiet import quiet_libraries

    quiet_libraries()
    from qlorafx.data.build import load_dataset, prepare
    from qlorafx.evaluate.choice import accuracy
    from qlorafx.evaluate.loss import token_loss
    from qlorafx.infer.trained_run import load_quantized
    from qlorafx.report import write_report

    model = load_quantized(trained)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(trained.path / TOKENIZER_DIR)
    results: dict = {"step": trained.status.get("steps"), "source": "qlorafx eval"}
    if not args.no_loss:
        if dataset is not None:
            examples = load_dataset(dataset, recipe, tokenizer, lambda *_: None, trained.encoder_decoder).examples
            results["eval_data"] = dataset.path
        else:
            examples = prepare(recipe, tokenizer, lambda *_: None, trained.encoder_decoder).val_examples
            results["eval_data"] = "validation split"
        results |= token_loss(model, tokenizer, examples)
    if questions:
        results |= accuracy(model, tokenizer, questions) | {"mc_file": str(Path(args.mc).resolve())}

    with (trained.path / METRICS_FILE).open("a", encoding="utf-8") as f:
        f.write(json.dumps(results) + "\n")
    status_path = trained.path / FINISHED_MARKER
    status = json.loads(status_path.read_text(encoding="utf-8"))
    status.setdefault("evaluations", []).append(results)
    status_path.write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    write_report(trained.path)
    for key, value in results.items():
        if key not in ("step", "source"):
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return 0
