"""qlorafx merge: the saved model loads with AutoModelForCausalLM and gives base + adapter's logits;
a merge that wrote the base unchanged is caught; every refusal comes before any weight loads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from qlorafx.cli.main import main
from qlorafx.infer import merge
from qlorafx.recipe.load import load_recipe
from qlorafx.finetune import train
from tests.cli.test_cli import heavy_modules_after
from tests.train.tiny import tiny_recipe

PROMPTS = ["### Instruction:\nWhat sound does a cow make?", "A cow says moo"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("merge")
    loaded = load_recipe(tiny_recipe(tmp), ["training.max_steps=8", "logging.backends=[jsonl]",
                                            "logging.sample_max_new_tokens=0"])
    train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    return tmp / "run"


def base_plus_adapter(run: Path, dtype: torch.dtype, batch) -> torch.Tensor:
    """Computed here independently: the unquantized base with the adapter unmerged."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(run / "base_model", dtype=dtype)
    with torch.no_grad():
        return PeftModel.from_pretrained(base, run / "adapter").eval()(**batch).logits.float()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_merged_model_loads_and_matches_base_plus_adapter(run_dir, tmp_path, capsys, dtype):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    assert main(["merge", str(run_dir), "--out", str(out), "--dtype", dtype]) == 0
    printed = capsys.readouterr().out
    assert "largest logit difference, merged vs base + adapter: " in printed and "note:" not in printed

    model = AutoModelForCausalLM.from_pretrained(out)  # as a user loads it
    assert model.dtype == getattr(torch, dtype)
    with safe_open(out / "model.safetensors", "pt") as f:
        assert not [k for k in f.keys() if "lora" in k]
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # safetensors alone would leave the weights 0600
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        got = model.eval()(**batch).logits.float()
    want = base_plus_adapter(run_dir, getattr(torch, dtype), batch)
    allowed = merge.TOLERANCE[dtype] * want.abs().max().item()
    assert (got - want).abs().max().item() <= allowed
    with torch.no_grad():  # and the merge changed the model: the base alone is far off
        base = AutoModelForCausalLM.from_pretrained(run_dir / "base_model", dtype=getattr(torch, dtype))
        assert (base(**batch).logits.float() - want).abs().max().item() > 10 * allowed


def test_a_merge_that_writes_the_base_unchanged_is_caught(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(merge, "merge_adapter", lambda model: model.unload())  # adapter dropped, base as it was
    out = tmp_path / "merged"
    assert main(["merge", str(run_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "merge check failed: the merged model's logits differ from base + adapter by up to" in err
    assert "so the merge is wrong; nothing was kept in" in err and "Traceback" not in err
    assert not out.exists()


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


def refused(args, message, capsys):
    assert main(["merge", *map(str, args)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err


def test_a_run_that_did_not_finish_is_refused(run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)
    (run / "run.json").unlink()
    refused([run, "--out", tmp_path / "m"], f"{run} holds an unfinished run (no run.json)", capsys)
    (run / "run.json").write_text(json.dumps({"status": "running"}))
    refused([run, "--out", tmp_path / "m"], "holds an unfinished run (run.json says 'running')", capsys)
    refused([tmp_path / "nothing", "--out", tmp_path / "m"], "nothing: no such directory", capsys)
    assert not (tmp_path / "m").exists()


def test_a_run_without_an_adapter_is_refused(run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)
    (run / "adapter" / "adapter_model.safetensors").unlink()
    refused([run, "--out", tmp_path / "m"], "holds no PEFT adapter (adapter_model.safetensors missing)", capsys)


def test_an_existing_output_is_never_overwritten(run_dir, tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine")
    refused([run_dir, "--out", tmp_path / "m"], "is a folder that is not empty; merge never overwrites", capsys)
    assert (tmp_path / "m" / "keep.txt").read_text() == "mine"
    (tmp_path / "model.safetensors").write_text("mine")
    refused([run_dir, "--out", tmp_path / "model.safetensors"], f"--out {tmp_path / 'model.safetensors'} is a file; "
                                                                  "the merged model is a folder", capsys)
    assert (tmp_path / "model.safetensors").read_text() == "mine"
    # where no folder can be made: refused before the merge (save_pretrained raised FileNotFoundError after it)
    refused([run_dir, "--out", "/proc/merged"], "--out /proc/merged cannot be made: /proc cannot be written to (", capsys)
    refused([run_dir, "--out", tmp_path / "model.safetensors" / "m"], f"--out {tmp_path / 'model.safetensors' / 'm'} "
            f"cannot be made: {tmp_path / 'model.safetensors'} is a file", capsys)


def test_an_adapter_trained_on_another_base_is_refused(run_dir, tmp_path, capsys):
    """run.json says which base the adapter trained on, by what it is; the base found is another."""
    other = copy_run(run_dir, tmp_path)
    status = json.loads((other / "run.json").read_text())
    status["base"] = {"hub": "huggyllama/llama-7b", "revision": "8416d3fefb0cb3ff5775a7b13c1692d10ff1aa16"}
    (other / "run.json").write_text(json.dumps(status))
    refused([other, "--out", tmp_path / "m"], f"the base at {other}/base_model is not the one the adapter in "
                                              f"{other}/adapter trained on: it trained on the hub model "
                                              "huggyllama/llama-7b (commit 8416d3f", capsys)


def test_an_adapter_of_a_run_from_before_run_json_named_its_base_is_checked_by_path(run_dir, tmp_path, capsys):
    other = copy_run(run_dir, tmp_path)
    status = json.loads((other / "run.json").read_text())
    del status["base"]
    (other / "run.json").write_text(json.dumps(status))
    config = json.loads((other / "adapter" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "huggyllama/llama-7b"
    (other / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    refused([other, "--out", tmp_path / "m"], f"was trained on huggyllama/llama-7b, but this run's base is "
                                              f"{other}/base_model; it needs huggyllama/llama-7b", capsys)


def test_an_adapter_that_does_not_fit_the_base_is_refused(run_dir, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    run = copy_run(run_dir, tmp_path)
    small = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=2, vocab_size=259)
    shutil.rmtree(run / "adapter")
    get_peft_model(AutoModelForCausalLM.from_config(small), LoraConfig(target_modules="all-linear")).save_pretrained(run / "adapter")
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(run / "base_model")  # the name agrees; the shapes do not
    (run / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    refused([run, "--out", tmp_path / "m"], "does not fit the base", capsys)
    assert not (tmp_path / "m").exists()


def test_refusals_come_before_torch_is_imported(run_dir, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("x")
    code, heavy = heavy_modules_after(["merge", str(run_dir), "--out", str(tmp_path / "m")])
    assert code == 2 and heavy == []
