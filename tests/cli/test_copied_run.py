"""A run copied elsewhere is used as it is (its base identified by content, not by where it was); a changed
base is refused; a run from before the base was recorded still reads; `qlorafx eval` gives the loss the run
logged for the same split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qlorafx.cli.main import main
from qlorafx.run_files import BASE_MODEL_DIR, FINISHED_MARKER
from tests.infer.finished import finished_run


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory)


@pytest.fixture
def copy(original, tmp_path) -> Path:
    """`cp -a RUN /elsewhere/qs`: the original stays where it was."""
    return Path(shutil.copytree(original, tmp_path / "elsewhere" / "qs", symlinks=True))


def test_a_copied_run_generates_and_evaluates_where_it_is(original, copy, capsys):
    assert json.loads((original / FINISHED_MARKER).read_text())["base"]["files"]["model.safetensors"]["sha256"]
    assert main(["generate", str(copy), "--prompt", "What sound does a cow make?", "--max-new-tokens", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["output"]
    assert main(["eval", str(copy)]) == 0
    shown = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    logged = json.loads((original / FINISHED_MARKER).read_text())["eval_loss_after"]
    # the same split, the same per-token mean: the loss the run logged at its end (to float32 noise)
    assert float(shown["eval_loss"]) == pytest.approx(logged, abs=2e-4)


def test_a_base_that_is_not_the_one_trained_on_is_refused(copy, capsys):
    weights = copy / BASE_MODEL_DIR / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(8)  # the last weights zeroed: same size, same header
    weights.write_bytes(bytes(data))
    assert main(["generate", str(copy), "--prompt", "Hi"]) == 2
    err = capsys.readouterr().err
    assert f"is not the one the adapter in {copy / 'adapter'} trained on: model.safetensors differs" in err
    for command in (["eval", str(copy)], ["merge", str(copy), "--out", str(copy.parent / "merged")]):
        assert main(command) == 2 and "model.safetensors differs" in capsys.readouterr().err


def test_a_run_from_before_the_base_was_recorded_still_reads(original, copy, capsys):
    from qlorafx.report.run import trained_run

    status = json.loads((copy / FINISHED_MARKER).read_text())
    del status["base"]  # as run.json was written before
    (copy / FINISHED_MARKER).write_text(json.dumps(status))
    assert trained_run(copy).base == str(copy / BASE_MODEL_DIR)  # a copy: the same files as the original's base
    (copy / BASE_MODEL_DIR / "config.json").write_text((copy / BASE_MODEL_DIR / "config.json").read_text() + " ")
    assert main(["chat", str(copy)]) == 2
    assert f"was trained on {original / BASE_MODEL_DIR}, but this run's base is {copy / BASE_MODEL_DIR}" in \
        capsys.readouterr().err


def test_eval_of_chat_data_names_the_template_it_needs(copy, tmp_path, capsys):
    """The run trained on alpaca prompts; its tokenizer has no chat template: eval says to add --chat-template
    (it said to set chat_template on the dataset, which eval has not), before loading a weight."""
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello"}]}) + "\n")
    assert main(["eval", str(copy), "--data", str(data), "--format", "chat"]) == 2
    assert "the run's tokenizer has none (it trained on alpaca prompts); add --chat-template NAME, one of chatml" \
        in capsys.readouterr().err
    assert main(["eval", str(copy), "--data", str(data), "--format", "chat", "--chat-template", "chatml"]) == 0
    assert "eval_tokens: " in capsys.readouterr().out
