"""`qlorafx eval`: loss and perplexity of a finished run, multiple-choice accuracy, results recorded."""

from __future__ import annotations

import json
import math

import pytest
import torch

from qlorafx.evaluate.choice import ChoiceFileError, accuracy, letter_ids, read_questions
from qlorafx.infer.trained_run import load_quantized
from qlorafx.report.run import RunError, trained_run
from qlorafx.recipe.load import load_recipe
from qlorafx.finetune import train
from tests.cli.test_cli import qlorafx
from tests.train.tiny import tiny_recipe


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    loaded = load_recipe(tiny_recipe(tmp), ["training.max_steps=12", "logging.backends=[jsonl]",
                                            "logging.sample_max_new_tokens=0", "data.packing=false"])
    train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    return tmp / "run"


def test_questions_are_rendered_qlora_style(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({"question": "2+2?", "choices": ["3", "4"], "answer": "B"}) + "\n"
                    + json.dumps({"question": "Sky?", "choices": ["blue", "red", "green"], "answer": 0}) + "\n")
    assert read_questions(path) == [("2+2?\nA. 3\nB. 4\nAnswer:", 2, 1), ("Sky?\nA. blue\nB. red\nC. green\nAnswer:", 3, 0)]


@pytest.mark.parametrize("line, message", [
    ('{"question": "q", "choices": ["a"], "answer": 0}', "choices must be a list of 2"),
    ('{"question": "q", "choices": ["a", "b"], "answer": 2}', "answer 2 is not a choice's index or letter"),
    ('{"question": "q"}', "expected {question, choices, answer}"),
    ("not json", "mc.jsonl:1: expected"),
])
def test_bad_questions_name_the_line(tmp_path, line, message):
    (tmp_path / "mc.jsonl").write_text(line + "\n")
    with pytest.raises(ChoiceFileError, match=message.replace("{", r"\{").replace("}", r"\}")):
        read_questions(tmp_path / "mc.jsonl")


def test_accuracy_is_the_argmax_over_the_answer_letters(run_dir, tmp_path):
    from transformers import AutoTokenizer

    model, tokenizer = load_quantized(trained_run(run_dir)), AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps({"question": f"What sound does a {a} make?", "choices": ["moo", "woof", "meow"],
                                        "answer": i % 3}) + "\n" for i, a in enumerate(["cow", "dog", "cat", "duck"])))
    questions = read_questions(path)
    expected = 0
    with torch.no_grad():
        for prompt, count, answer in questions:
            logits = model(**tokenizer(prompt, return_tensors="pt")).logits[0, -1]
            ids = letter_ids(tokenizer, count)
            expected += int(max(range(count), key=lambda i: logits[ids[i]].item()) == answer)
    assert accuracy(model, tokenizer, questions) == {"mc_accuracy": expected / 4, "mc_questions": 4}
    assert len(set(letter_ids(tokenizer, 3))) == 3


def test_eval_on_the_validation_split_records_its_results(run_dir, tmp_path):
    (tmp_path / "mc.jsonl").write_text(json.dumps({"question": "q", "choices": ["a", "b"], "answer": 0}) + "\n")
    done = qlorafx("eval", run_dir, "--mc", tmp_path / "mc.jsonl", timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["eval_data"] == "validation split" and last["step"] == 12 and last["mc_questions"] == 1
    assert last["eval_perplexity"] == pytest.approx(math.exp(last["eval_loss"]))
    # the trainer's own final evaluation of the same split (batch means, not token means): close
    trainer_eval = json.loads((run_dir / "run.json").read_text())["eval_loss_after"]
    assert last["eval_loss"] == pytest.approx(trainer_eval, rel=0.05)
    assert json.loads((run_dir / "run.json").read_text())["evaluations"][-1] == last
    assert f"eval_loss: {last['eval_loss']:.4f}" in done.stdout


def test_eval_on_given_data(run_dir, tmp_path):
    data = tmp_path / "held_out.jsonl"
    data.write_text(json.dumps({"instruction": "What sound does a cow make?", "input": "", "output": "A cow says moo."}) + "\n")
    done = qlorafx("eval", run_dir, "--data", data, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["eval_data"] == str(data) and last["eval_tokens"] == len("A cow says moo.") + 1


def test_eval_refuses_what_it_cannot_read_before_loading_weights(tmp_path, run_dir):
    with pytest.raises(RunError, match=r"holds no qlorafx run \(no recipe.yaml, no run.json\)"):
        trained_run(tmp_path)
    done = qlorafx("eval", run_dir, "--data", tmp_path / "nope.jsonl")
    assert done.returncode == 2 and "--data" in done.stderr and "not found" in done.stderr
    done = qlorafx("eval", run_dir, "--mc", tmp_path / "nope.jsonl")
    assert done.returncode == 2 and "file not found" in done.stderr and "Traceback" not in done.stderr
