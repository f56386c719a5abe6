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
    quantizes them, peft wraps them (it said "matches no linear layer ... named  (or use 'all-linear')"), and
    the adapter really trains: every LoRA B (zero at the start) moved, sized by its Conv1D's output, and the
    eval loss fell. 6 steps, a few seconds on an idle 2-core machine."""
    from safetensors.numpy import load_file

    from qlorafx.cli.main import main

    # initializer_range 0.1 as tiny_recipe's llama: a frozen random head with tiny weights learns slowly
    gpt2 = "{model_type: gpt2, n_layer: 2, n_embd: 64, n_head: 2, initializer_range: 0.1}"
    assert main(["train", str(tiny_recipe(tmp_path)), f"model.config={gpt2}", "training.max_steps=6",
                 "logging.every=1", "logging.backends=[jsonl]", "logging.sample_max_new_tokens=0"]) == 0
    assert "; LoRA trains " in capsys.readouterr().out
    run = tmp_path / "run"
    targets = json.loads((run / "adapter" / "adapter_config.json").read_text())["target_modules"]
    assert {t.rsplit(".", 1)[-1] for t in targets} == {"c_attn", "c_proj", "c_fc"}

    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    moved = {name.split(".lora_B")[0].split("transformer.h.")[-1]: (b.shape[0], float(abs(b).max()))
             for name, b in weights.items() if ".lora_B" in name}
    n_embd = 64  # each B's rows are its Conv1D's output width: c_attn q, k and v; c_fc 4x; each c_proj back
    assert {name: rows for name, (rows, _) in moved.items()} == {
        f"{layer}.{module}": rows for layer in (0, 1)
        for module, rows in (("attn.c_attn", 3 * n_embd), ("attn.c_proj", n_embd), ("mlp.c_fc", 4 * n_embd),
                             ("mlp.c_proj", n_embd))}
    assert all(largest > 1e-3 for _, largest in moved.values()), moved  # peft starts every B at zero

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(evals) == 2 and evals[1] < 0.9 * evals[0], evals  # 5.72 -> 4.33 when written
    assert len(losses) == 6 and losses[-1] < losses[0], losses
