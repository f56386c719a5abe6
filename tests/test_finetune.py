"""End to end: a tiny 4-bit QLoRA run learns, writes a run directory that explains itself, and
its saved adapter reproduces the trained model."""

from __future__ import annotations

import json

import pytest
import torch

from qlorafx import finetune
from qlorafx.data.tokenize import Example
from qlorafx.finetune import Summary, sample, train
from qlorafx.recipe.load import load_recipe
from qlorafx.train.run_dir import RunDirError
from tests.train.tiny import QUICKSTART_DATA, no_bos_tokenizer, tiny_recipe


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    loaded = load_recipe(tiny_recipe(tmp))
    return loaded, train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)


def test_loss_falls(finished):
    _, result = finished
    records = [json.loads(line) for line in open(finished[0].recipe.output_dir + "/metrics.jsonl")]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0]
    assert result.summary.eval_loss_after < 0.8 * result.summary.eval_loss_before


def test_metrics_have_step_loss_lr_throughput_and_evals(finished):
    loaded, _ = finished
    lines = open(loaded.recipe.output_dir + "/metrics.jsonl").read().splitlines()
    records = [json.loads(line) for line in lines]
    train_logs = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_logs] == [4, 8, 12, 16, 20, 24]
    assert all(r["lr"] == pytest.approx(2e-2) and r["tokens_per_s"] > 0 for r in train_logs)
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 24]


def test_run_directory_explains_itself(finished, tmp_path):
    loaded, result = finished
    from pathlib import Path

    run = Path(loaded.recipe.output_dir)
    for name in ("recipe.yaml", "versions.json", "metrics.jsonl", "run.json", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors", "tokenizer/tokenizer.json", "base_model/config.json"):
        assert (run / name).is_file(), name
    versions = json.loads((run / "versions.json").read_text())
    assert versions["compute_dtype"] == "float32" and versions["torch"] and versions["bitsandbytes"]
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "finished" and status["steps"] == 24
    # the saved recipe reruns the same run
    assert load_recipe(run / "recipe.yaml").recipe == loaded.recipe
    assert result.summary.sample_output is not None


def test_saved_adapter_reproduces_the_trained_logits(finished):
    loaded, result = finished
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from qlorafx.model.quantize import keep_weights_trainable_on_cpu, quantization_config

    run = loaded.recipe.output_dir
    base = AutoModelForCausalLM.from_pretrained(
        f"{run}/base_model", quantization_config=quantization_config(loaded.recipe.quantization, "float32"),
        dtype=torch.float32)
    keep_weights_trainable_on_cpu(base)
    reloaded = PeftModel.from_pretrained(base, f"{run}/adapter").eval()
    trained = result.model.eval()
    batch = result.tokenizer(["### Instruction:\nWhat sound does a cow make?", "A cow says"], return_tensors="pt", padding=True)
    with torch.no_grad():
        want = trained(**batch).logits
        got = reloaded(**batch).logits
    assert torch.allclose(want, got, atol=1e-5), (want - got).abs().max()
    # and the adapter matters: the base alone gives other logits
    with torch.no_grad(), reloaded.disable_adapter():
        assert (reloaded(**batch).logits - want).abs().max() > 1e-2


def test_a_finished_run_is_not_overwritten(finished):
    loaded, _ = finished
    before = open(loaded.recipe.output_dir + "/run.json").read()
    with pytest.raises(RunDirError, match="already holds a finished run; pass --overwrite"):
        train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    assert open(loaded.recipe.output_dir + "/run.json").read() == before


def test_the_sample_comes_from_the_first_validation_example_that_has_a_prompt(finished, monkeypatch):
    _, result = finished
    tok = result.tokenizer
    trained_from_the_start = Example(tok("Hi")["input_ids"][1:], tok("Hi")["input_ids"][1:])  # no BOS, all trained
    ids = tok("Q: 2+2?\nA: 4")["input_ids"]
    answer = len(tok("Q: 2+2?\nA:")["input_ids"])
    with_prompt = Example(ids, [-100] * answer + ids[answer:])
    lines, summary = [], Summary("run", 1, None, None, None, 0.0, 1, 1)
    sample(summary, result.model, tok, [trained_from_the_start, with_prompt], 3, lines.append)
    assert summary.sample_prompt == "Q: 2+2?\nA:" and summary.sample_output is not None and not lines

    lines, summary = [], Summary("run", 1, None, None, None, 0.0, 1, 1)
    sample(summary, result.model, tok, [trained_from_the_start], 3, lines.append)
    assert summary.sample_output is None and summary.sample_error is None
    assert lines == ["sample: none, no validation example has a prompt before its first trained token"]

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(finetune, "generate_text", broken)
    lines, summary = [], Summary("run", 1, None, None, None, 0.0, 1, 1)
    sample(summary, result.model, tok, [with_prompt], 3, lines.append)
    assert summary.sample_output is None
    assert summary.sample_error == "RuntimeError: CUDA error: device-side assert triggered"
    assert lines == ["warning: the sample generation failed (RuntimeError: CUDA error: device-side assert "
                     "triggered); the run is finished and saved"]


def test_a_run_whose_examples_are_trained_from_their_first_token_finishes(tmp_path):
    """No BOS and the completion format: no validation example has a prompt (before issue 9 the
    sample generation was handed none, crashed, and the run never wrote run.json)."""
    tokenizer = no_bos_tokenizer(tmp_path / "tokenizer")
    lines = []
    loaded = load_recipe(tiny_recipe(tmp_path), [
        f"model.tokenizer={tokenizer}", f"data.datasets=[{{path: {QUICKSTART_DATA}, format: completion, column: output}}]",
        "training.max_steps=2", "logging.every=1", "logging.backends=[jsonl]", "data.val_size=4"])
    result = train(loaded.recipe, loaded.to_yaml(), log=lines.append)
    status = json.loads((tmp_path / "run" / "run.json").read_text())
    assert status["status"] == "finished" and status["steps"] == 2 and status["sample_output"] is None
    assert "sample: none, no validation example has a prompt before its first trained token" in lines
    assert result.tokenizer("Hi")["input_ids"] == [39, 72]  # the run's tokenizer really adds no BOS
