"""The command line as typed: overrides wherever they stand, flags that only make sense together, counts."""

from __future__ import annotations

import os

import pytest

from qlorafx.cli.main import main, parse


def test_an_override_after_resume_is_an_override_not_a_checkpoint():
    args = parse(["train", "r.yaml", "--resume", "training.max_steps=1", "lora.r=8"])
    assert args.resume is True
    assert args.overrides == ["lora.r=8", "training.max_steps=1"]


def test_resume_still_takes_a_checkpoint_path(tmp_path):
    checkpoint = tmp_path / "checkpoint-4"
    assert parse(["train", "r.yaml", "--resume", str(checkpoint), "lora.r=8"]).resume == str(checkpoint)
    odd = tmp_path / "a=b"  # an existing path with '=' in its name stays a path
    odd.mkdir()
    assert parse(["validate", "r.yaml", "--resume", str(odd)]).resume == str(odd)


@pytest.mark.parametrize("argv, message", [
    (["train", "r.yaml", "--force"], "--force only applies with --resume"),
    (["validate", "r.yaml", "--force"], "--force only applies with --resume"),
    (["train", "r.yaml", "--overwrite", "--resume"], "--overwrite starts over and --resume continues: choose one"),
    (["preprocess", "r.yaml", "--show", "-1"], "argument --show: expected 0 or more, got -1"),
    (["preprocess", "r.yaml", "--show", "two"], "argument --show: expected a whole number, got 'two'"),
    (["train", "r.yaml", "--nproc", "0"], "argument --nproc: expected 1 or more, got 0"),
])
def test_options_that_cannot_be_meant_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"usage: qlorafx {argv[0]}" in err and message in err


def test_a_reader_that_stops_reading_ends_the_command_without_a_traceback(tmp_path):
    # `qlorafx validate r.yaml | head -1`: head exits after a line, and printing the next raised BrokenPipeError
    import subprocess
    import sys

    from tests.train.tiny import tiny_recipe

    reader_gone_r, writer = os.pipe()
    os.close(reader_gone_r)  # the reader has already stopped reading when the command prints
    try:
        done = subprocess.run([sys.executable, "-m", "qlorafx.cli.main", "validate", str(tiny_recipe(tmp_path))],
                              stdout=writer, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(writer)
    assert done.returncode == 141 and "Traceback" not in done.stderr, done.stderr[-2000:]
