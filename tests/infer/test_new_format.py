"""A format defined here, in one class and one registration, trains and answers: its training examples,
generate and chat all render it with no edit anywhere else in qlorafx.

The recipe schema collects the formats when it is imported, so the registration comes first: in the
package that is the format's line in data/formats/__init__.py, here the subprocess registers ``QA``
(tests/infer/qa_format.py) before it imports the CLI. In this process it is registered for one test
at a time (and taken out again), so that no other test sees it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qlorafx.data.build import load_dataset
from qlorafx.data.formats import FORMATS
from qlorafx.infer.chat import ChatSession
from qlorafx.infer.prompt import Prompter, conversation
from qlorafx.report.run import FinishedRun, trained_run
from tests.conftest import REPO
from tests.infer.finished import finished_run
from tests.infer.qa_format import QA, QADataset


RECORDS = [{"q": "What sound does a cow make?", "a": "Moo."}, {"q": "And a dog?", "a": "Woof."}]


@pytest.fixture
def qa(monkeypatch):
    monkeypatch.setitem(FORMATS._entries, "qa", QA())  # registered for this test only


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory)


def qa_run(run_dir: Path, data: Path) -> FinishedRun:
    """The finished run, its first dataset swapped for a qa one (the recipe model is built without 'qa')."""
    run = trained_run(run_dir)
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    recipe = run.recipe.model_copy(update={"data": run.recipe.data.model_copy(update={
        "datasets": [QADataset(path=str(data))]})})
    return FinishedRun(run.path, recipe, run.base, run.status)


def test_the_inference_prompt_is_the_training_prompt(qa, trained, tmp_path, byte_tokenizer):
    run = qa_run(trained, tmp_path / "qa.jsonl")
    examples = load_dataset(run.dataset, run.recipe, byte_tokenizer, log=lambda *_: None).examples
    prompter = Prompter(run, byte_tokenizer)
    for record, example in zip(RECORDS, examples):
        for prompt in (record["q"], {"q": record["q"]}):
            encoded = prompter.encode(conversation(run.dataset, prompt))
            assert encoded.ids == example.prompt_ids
            assert encoded.text == f"Question: {record['q']}\nAnswer:"


def test_a_chat_session_keeps_its_history_in_the_new_format(qa, trained, tmp_path, byte_tokenizer):
    session = ChatSession(Prompter(qa_run(trained, tmp_path / "qa.jsonl"), byte_tokenizer), 8, 512)
    session.add("What sound does a cow make?", " Moo.")  # an answer is the whole assistant turn the model wrote
    assert session.prompt("And a dog?").encoded.text == (
        "Question: What sound does a cow make?\nAnswer: Moo.</s>Question: And a dog?\nAnswer:")


REGISTER_THEN_RUN = """
import json, sys
from qlorafx.data.formats.base import register
from tests.infer.qa_format import QA
register(QA)  # the one registration line, before the schema is built
from qlorafx.cli.main import main
sys.exit(max(main(argv) for argv in json.loads(sys.argv[1])))
"""


def test_generate_and_chat_answer_a_run_of_the_new_format(trained, tmp_path):
    """The CLI on a run whose recipe names format qa: generate reads records and texts, chat keeps history."""
    run = tmp_path / "qa-run"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("base_model"))
    (run / "base_model").symlink_to(trained / "base_model")  # the base the adapter records
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["data"]["datasets"][0]["format"] == "alpaca"
    recipe["data"]["datasets"] = [{"path": str(data), "format": "qa"}]
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"q": "And a dog?"}\n"And a dog?"\n')

    out = tmp_path / "answers.jsonl"
    commands = [["generate", str(run), "--file", str(prompts), "--max-new-tokens", "4", "--out", str(out)],
                ["chat", str(run), "--json", "--max-new-tokens", "4"]]
    done = subprocess.run([sys.executable, "-c", REGISTER_THEN_RUN, json.dumps(commands)], input="Hi\nAnd a dog?\n",
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["prompt"] for a in answers] == [{"q": "And a dog?"}, "And a dog?"]
    assert answers[0]["output"] == answers[1]["output"] and answers[0]["output"]  # one prompt, two spellings
    first, second = [json.loads(line) for line in done.stdout.splitlines()]
    assert first["prompt"] == "Question: Hi\nAnswer:"
    assert second["prompt"] == f"Question: Hi\nAnswer:{first['output']}</s>Question: And a dog?\nAnswer:"
