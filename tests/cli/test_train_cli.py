"""`qlorafx train` as a user runs it: progress on the console, a protected run directory."""

from __future__ import annotations

import json

from tests.cli.test_cli import qlorafx
from tests.train.tiny import tiny_recipe


def test_train_shows_progress_and_protects_the_finished_run(tmp_path):
    recipe = tiny_recipe(tmp_path)
    first = qlorafx("train", recipe, "training.max_steps=4", "logging.every=2")
    assert first.returncode == 0, first.stderr
    out = first.stdout + first.stderr
    for shown in ("loss=", "lr=", "tok_s=", "eval loss", "data: 120 train / 8 val examples", "done: 4 steps"):
        assert shown in out, shown
    assert "Traceback" not in out and "Failed to load CPU gemm_4bit_forward" not in out
    assert "sample:\n" in first.stdout and "\033[" not in first.stdout  # not a terminal: no escape codes in the text
    run_json = (tmp_path / "run" / "run.json").read_text()
    assert json.loads(run_json)["steps"] == 4

    again = qlorafx("train", recipe, "training.max_steps=4")
    assert again.returncode == 2
    assert "already holds a finished run; pass --overwrite to replace it" in again.stderr
    assert "Traceback" not in again.stderr
    assert (tmp_path / "run" / "run.json").read_text() == run_json

    replaced = qlorafx("train", recipe, "--overwrite", "training.max_steps=2", "logging.every=1")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["steps"] == 2


def test_output_dir_that_is_not_a_run_is_never_touched(tmp_path):
    precious = tmp_path / "run" / "thesis.tex"
    precious.parent.mkdir()
    precious.write_text("years of work")
    done = qlorafx("train", tiny_recipe(tmp_path), "--overwrite")
    assert done.returncode == 2
    assert "is not empty and holds no qlorafx run (no .qlorafx-run mark" in done.stderr
    assert precious.read_text() == "years of work" and len(list(precious.parent.iterdir())) == 1


def test_a_gpt2_base_trains_its_conv1d_layers(tmp_path, capsys):
    """GPT-2's projections are transformers' Conv1D, not nn.Linear: 'all-linear' finds them, bitsandbytes
    quantizes them, peft wraps them (it said "matches no linear layer ... named  (or use 'all-linear')")."""
    from qlorafx.cli.main import main

    recipe = tiny_recipe(tmp_path)
    assert main(["train", str(recipe), "model.config={model_type: gpt2, n_layer: 2, n_embd: 64, n_head: 2}",
                 "training.max_steps=1", "data.val_size=0", "logging.backends=[jsonl]",
                 "logging.sample_max_new_tokens=0"]) == 0
    assert "; LoRA trains " in capsys.readouterr().out
    targets = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())["target_modules"]
    assert {t.rsplit(".", 1)[-1] for t in targets} == {"c_attn", "c_proj", "c_fc"}
