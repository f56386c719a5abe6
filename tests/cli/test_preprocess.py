"""`qlorafx preprocess`, run as a subprocess: the JSON report, marked examples, and a clean failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qlorafx.data.formats.alpaca import PROMPT_NO_INPUT, PROMPT_WITH_INPUT

ALPACA = [{"instruction": "Say hi.", "input": "", "output": "Hi."},
          {"instruction": "Add.", "input": "1 + 1", "output": "2"},
          {"instruction": "Ramble.", "input": "", "output": "la " * 100}]
TEXTS = [{"text": "NF4 is a 4-bit data type."}, {"text": "Double quantization quantizes the constants."},
         {"text": "Paged optimizers avoid memory spikes."}]
MAX_LENGTH = 256


def qlorafx(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qlorafx.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def write_recipe(folder: Path, datasets: str, **data) -> Path:
    """A recipe with the from_config model (so the byte tokenizer: one token per byte) and these datasets."""
    (folder / "alpaca.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ALPACA))
    (folder / "texts.json").write_text(json.dumps(TEXTS))
    settings = "".join(f"  {key}: {json.dumps(value)}\n"
                       for key, value in {"max_length": MAX_LENGTH, "cache_dir": str(folder / "cache"), **data}.items())
    path = folder / "recipe.yaml"
    path.write_text("model:\n  loader: from_config\n  config: {model_type: llama}\n"
                    f"data:\n  datasets: {datasets}\n{settings}"
                    f"training: {{micro_batch_size: 4}}\noutput_dir: {json.dumps(str(folder / 'run'))}\n")
    return path


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    return write_recipe(tmp_path, "[{path: alpaca.jsonl, format: alpaca}, {path: texts.json, format: completion}]", val_size=2)


def _lengths():
    """(tokens, trained tokens) of each example with the byte tokenizer: BOS, a token per byte, EOS."""
    alpaca = []
    for r in ALPACA:
        prompt = (PROMPT_WITH_INPUT if r["input"] else PROMPT_NO_INPUT).format(**r)
        full = 1 + len(prompt) + len(r["output"]) + 1
        alpaca.append((min(full, MAX_LENGTH), min(full, MAX_LENGTH) - 1 - len(prompt)))
    return alpaca, [(1 + len(t["text"]) + 1, len(t["text"]) + 1) for t in TEXTS]


def _dataset(path, fmt, examples, truncated, cache):
    tokens, trained = sum(n for n, _ in examples), sum(t for _, t in examples)
    ordered = sorted(n for n, _ in examples)
    return {"path": str(path), "format": fmt, "records": 3, "conversations": 3, "examples": 3, "used": 3, "filtered": {},
            "truncated": truncated, "dropped": 0, "cache": cache, "tokens": tokens, "trained_tokens": trained,
            "trained_token_fraction": round(trained / tokens, 4), "no_trained_token": 0,
            "length": {"p50": ordered[1], "p90": ordered[2], "p99": ordered[2], "p100": ordered[2]}}


def test_json_report(recipe, byte_tokenizer):
    done = qlorafx("preprocess", recipe, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # one JSON object, nothing else on stdout
    alpaca, texts = _lengths()
    assert alpaca[2][0] == MAX_LENGTH  # the ramble is truncated, its response cut short but not away
    tokens = sum(n for n, _ in alpaca + texts)
    trained = sum(t for _, t in alpaca + texts)
    assert {k: report[k] for k in ("examples", "val_examples", "truncated", "dropped", "filtered", "tokens",
                                   "trained_tokens", "trained_token_fraction", "no_trained_token", "batching")} == {
        "examples": 4, "val_examples": 2, "truncated": 1, "dropped": 0, "filtered": 0, "tokens": tokens,
        "trained_tokens": trained, "trained_token_fraction": round(trained / tokens, 4), "no_trained_token": 0,
        "batching": "packing"}
    assert report["datasets"] == [_dataset(recipe.parent / "alpaca.jsonl", "alpaca", alpaca, 1, "miss"),
                                  _dataset(recipe.parent / "texts.json", "completion", texts, 0, "miss")]
    assert done.stderr.splitlines() == [f"data cache miss: {recipe.parent / 'alpaca.jsonl'} (3 examples)",
                                        f"data cache miss: {recipe.parent / 'texts.json'} (3 examples)"]

    # padding and rows depend on which examples the seeded split kept: the library, in this process, agrees
    from qlorafx.data import report as data_report
    from qlorafx.data.build import prepare
    from qlorafx.recipe.load import load_recipe

    loaded = load_recipe(recipe).recipe
    here = data_report.summary(prepare(loaded, byte_tokenizer, log=lambda line: None), loaded)
    assert (report["padding_fraction"], report["rows"]) == (here["padding_fraction"], here["rows"])
    assert 0 <= report["padding_fraction"] < 1 and 1 <= report["rows"] <= 4


def test_show_prints_examples_with_trained_tokens_marked(tmp_path):
    (tmp_path / "two.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ALPACA[:2]))
    recipe = write_recipe(tmp_path, "[{path: two.jsonl}]")
    done = qlorafx("preprocess", recipe, "--show", "2")
    assert done.returncode == 0, done.stderr
    summary, *shown = done.stdout.split("\n--- example ")
    assert "total: 2 train / 0 val examples" in summary
    expected = set()
    for record in ALPACA[:2]:
        prompt = (PROMPT_WITH_INPUT if record["input"] else PROMPT_NO_INPUT).format(**record)
        tokens, trained = 1 + len(prompt) + len(record["output"]) + 1, len(record["output"]) + 1
        # not a terminal, so [[...]] rather than colour
        expected.add(f"({tokens} tokens, {trained} trained; trained tokens in [[...]]) ---\n"
                     f"<s>{prompt}[[{record['output']}</s>]]\n")
    assert len(shown) == 2 and {block.split(" ", 1)[1] for block in shown} == expected
    assert sorted(block.split(" ", 1)[0] for block in shown) == ["0", "1"]


def test_all_responses_truncated_away_exits_2_with_a_clear_message(tmp_path):
    recipe = write_recipe(tmp_path, "[{path: alpaca.jsonl}]", max_length=120)  # the alpaca prompts alone are longer
    done = qlorafx("preprocess", recipe, "--show", "1")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        "error: no training example has a token that carries loss: every response was masked or truncated away; "
        "raise data.max_length or check the format")


def test_counts_are_over_the_examples_max_examples_keeps(tmp_path, shared_data, capsys):
    """400 of Alpaca's 5,000 records, many longer than 256 tokens: truncated counts the 400, as the
    training log, run.json and the model card say (they counted all 5,000)."""
    from qlorafx.cli.main import main

    recipe = write_recipe(tmp_path, f"[{{path: {shared_data / 'alpaca' / 'alpaca_5000.json'}, max_examples: 400}}]",
                          max_length=256)
    assert main(["preprocess", str(recipe), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [dataset] = report["datasets"]
    assert (dataset["records"], dataset["examples"], dataset["used"]) == (5000, 5000, 400)
    assert report["examples"] + report["val_examples"] == 400
    assert 100 < report["truncated"] <= 400 and dataset["truncated"] == report["truncated"]
    assert main(["preprocess", str(recipe)]) == 0
    text = capsys.readouterr().out
    assert "5000 records -> 5000 conversations -> 5000 examples, 400 used (max_examples)" in text
    assert f"truncated {report['truncated']} of the 400 used" in text
    assert "batching: packed rows: " in text


def test_one_of_a_kind_is_said_in_the_singular(tmp_path, capsys):
    from qlorafx.cli.main import main

    (tmp_path / "one.jsonl").write_text(json.dumps(ALPACA[0]) + "\n")
    recipe = write_recipe(tmp_path, "[{path: one.jsonl}]", packing=False)
    assert main(["preprocess", str(recipe)]) == 0
    text = capsys.readouterr().out
    assert "1 record -> 1 conversation -> 1 example\n" in text
    assert "batching: padded batches, padding 0.0%" in text
