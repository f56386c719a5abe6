"""qlorafx generate and qlorafx chat: JSONL out, prompts from a file in the run's format, a real
multi-turn chat on stdin, and every refusal (exit 2) before a weight loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qlorafx.cli.main import main
from tests.cli.test_cli import heavy_modules_after
from tests.infer.finished import finished_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory)


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_generate_writes_one_json_line_per_prompt(run_dir, tmp_path, capsys):
    out = tmp_path / "answers" / "out.jsonl"
    assert main(["generate", str(run_dir), "--prompt", "What sound does a cow make?", "--prompt", "Hi",
                 "--max-new-tokens", "6", "--out", str(out)]) == 0
    answers = lines(out.read_text())
    assert [a["prompt"] for a in answers] == ["What sound does a cow make?", "Hi"]
    assert all(isinstance(a["output"], str) and a["output"] for a in answers)
    assert capsys.readouterr().out == ""  # the answers went to --out


def test_generate_reads_prompts_in_the_runs_format(run_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(p) for p in [
        "Name a primary color.", {"prompt": "Name a primary color."},
        {"instruction": "Name a primary color.", "input": ""},
        {"instruction": "Name the sound this animal makes.", "input": "frog"},
        "Hi"]) + "\n")
    assert main(["generate", str(run_dir), "--file", str(prompts), "--batch-size", "2", "--max-new-tokens", "6"]) == 0
    answers = lines(capsys.readouterr().out)
    assert len(answers) == 5 and answers[2]["prompt"] == {"instruction": "Name a primary color.", "input": ""}
    assert answers[0]["output"] == answers[1]["output"] == answers[2]["output"]  # one prompt, three spellings


@pytest.mark.parametrize("options, message", [
    (["--temperature", "-1"], "--temperature must be 0 (greedy) or a positive number, got -1.0"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--top-k", "-1"], "--top-k must be 0 (off) or a positive count, got -1"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
])
def test_out_of_range_options_are_refused(run_dir, options, message, capsys):
    assert main(["generate", str(run_dir), "--prompt", "Hi", *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


def test_a_directory_without_a_finished_run_or_adapter_is_refused(run_dir, tmp_path, capsys):
    def refused(path, message, command="generate", *more):
        assert main([command, str(path), *(["--prompt", "Hi"] if command == "generate" else []), *more]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err

    run = copy_run(run_dir, tmp_path)
    (run / "run.json").write_text(json.dumps({"status": "running"}))
    refused(run, "holds an unfinished run (run.json says 'running'); resume or rerun it first")
    (run / "run.json").unlink()
    refused(run, f"{run} holds an unfinished run (no run.json)")
    refused(run, f"{run} holds an unfinished run (no run.json)", "chat")
    refused(tmp_path / "nothing", "nothing: no such directory")
    other = copy_run(run_dir, tmp_path / "other")
    (other / "adapter" / "adapter_model.safetensors").unlink()
    refused(other, "holds no PEFT adapter (adapter_model.safetensors missing)")
    prompts = tmp_path / "bad.jsonl"
    prompts.write_text('{"instruction": "Hi"}\n{"input": "no instruction"}\n')
    assert main(["generate", str(run_dir), "--file", str(prompts)]) == 2
    assert f"{prompts}:2: prompt for a 'alpaca' run: format 'alpaca' needs field 'instruction'" in capsys.readouterr().err


def test_refusals_come_before_torch_is_imported(run_dir, tmp_path):
    assert heavy_modules_after(["generate", str(run_dir), "--prompt", "Hi", "--top-p", "2"]) == [2, []]
    assert heavy_modules_after(["generate", str(tmp_path), "--prompt", "Hi"]) == [2, []]
    assert heavy_modules_after(["chat", str(run_dir), "--temperature", "-1"]) == [2, []]
    prompts = tmp_path / "bad.jsonl"
    prompts.write_text('{"instruction": 3}\n')
    assert heavy_modules_after(["generate", str(run_dir), "--file", str(prompts)]) == [2, []]


def test_chat_keeps_the_history_across_turns(run_dir):
    """Two lines on stdin: two answers, and the second prompt holds the first exchange."""
    done = subprocess.run([sys.executable, "-m", "qlorafx.cli.main", "chat", str(run_dir), "--json",
                           "--max-new-tokens", "6"], input="What sound does a cow make?\n\nAnd a dog?\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = lines(done.stdout)
    assert "### Instruction:\nWhat sound does a cow make?\n\n### Response: " in first["prompt"]
    assert second["prompt"].startswith(first["prompt"] + first["output"] + "</s>")
    assert second["prompt"].endswith("### Instruction:\nAnd a dog?\n\n### Response: ")
    assert first["output"] and second["output"] and "Traceback" not in done.stderr


def test_chat_answers_quit_exit_and_help_itself(run_dir, monkeypatch, capsys):
    """/help is answered by chat, /quit (or /exit) ends it: none of them is sent to the model."""
    import io

    for quit in ("/quit", "/exit"):
        monkeypatch.setattr("sys.stdin", io.StringIO(f"What sound does a cow make?\n/help\n {quit} \nNever sent\n"))
        assert main(["chat", str(run_dir), "--json", "--max-new-tokens", "4"]) == 0
        out, err = capsys.readouterr()
        [answer] = lines(out)  # one answer: the line after /quit was never read
        assert "/help" not in answer["prompt"] and "What sound does a cow make?" in answer["prompt"]
        assert "/reset clears the history, /quit or /exit (or Ctrl-D) ends, /help shows this" in err


def test_chat_commands_are_answered_in_any_case(run_dir, monkeypatch, capsys):
    """/HELP, /Reset, /QUIT (caps lock, a habit) are chat's own commands too: none reaches the model."""
    import io

    for quit in ("/QUIT", "/Exit"):
        monkeypatch.setattr("sys.stdin", io.StringIO(
            f"What sound does a cow make?\n/HELP\n/Reset\nAnd a dog?\n {quit} \nNever sent\n"))
        assert main(["chat", str(run_dir), "--json", "--max-new-tokens", "4"]) == 0
        out, err = capsys.readouterr()
        first, second = lines(out)  # two answers: /HELP and /Reset were not messages, nothing after /QUIT was read
        assert "What sound does a cow make?" in first["prompt"]
        assert "And a dog?" in second["prompt"] and "cow" not in second["prompt"]  # /Reset cleared the history
        for command in ("/HELP", "/Reset", quit.strip()):
            assert command not in first["prompt"] + second["prompt"]
        assert "/reset clears the history, /quit or /exit (or Ctrl-D) ends, /help shows this" in err


def test_generate_never_overwrites_an_existing_out_file(run_dir, tmp_path, capsys):
    kept = tmp_path / "answers.jsonl"
    kept.write_text("my earlier answers\n")
    assert main(["generate", str(run_dir), "--prompt", "Hi", "--out", str(kept)]) == 2
    assert f"--out {kept} already exists; generate never overwrites a file" in capsys.readouterr().err
    assert kept.read_text() == "my earlier answers\n"


def test_an_out_file_that_cannot_be_written_is_refused_before_the_model_loads(run_dir, capsys):
    # /proc takes no new file, even for root: open() raised FileNotFoundError once the answers were generated
    assert main(["generate", str(run_dir), "--prompt", "Hi", "--out", "/proc/answers.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "--out /proc/answers.jsonl cannot be written (" in err and "generating" not in err
