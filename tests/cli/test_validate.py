"""`qlorafx validate` checks what `train` would refuse, and says what it could not check (in-process: main())."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from qlorafx.cli.main import main

TINY = "{model_type: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 2}"


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"instruction": f"Say {i}.", "output": f"{i}"}) + "\n"
                                                  for i in range(10)))
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(f"""\
        model: {{loader: from_config, config: {TINY}}}
        data:
          datasets: [{{path: train.jsonl, format: alpaca}}]
        output_dir: {tmp_path / 'run'}
        """))
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["validate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def finished_run(folder: Path) -> None:
    from qlorafx.train.run_dir import RUN_MARKER

    folder.mkdir()
    (folder / RUN_MARKER).write_text("")
    (folder / "recipe.yaml").write_text("output_dir: run\n")
    (folder / "run.json").write_text('{"status": "finished"}\n')


def test_a_finished_run_in_output_dir_is_refused_unless_overwrite_is_given(recipe, tmp_path, capsys):
    finished_run(tmp_path / "run")
    code, _, err = run(capsys, recipe)
    assert code == 2 and f"output_dir ({recipe}:4): {tmp_path / 'run'} already holds a finished run; pass --overwrite" in err
    code, out, _ = run(capsys, recipe, "--overwrite")
    assert code == 0 and out.startswith("ok: ")
    assert (tmp_path / "run" / "run.json").is_file()  # validate only looks


def test_resume_is_checked_as_train_would(recipe, tmp_path, capsys):
    finished_run(tmp_path / "run")
    (tmp_path / "run" / "run.json").unlink()  # started, but no checkpoint yet
    code, _, err = run(capsys, recipe, "--resume")
    assert code == 2 and f"{tmp_path / 'run'} holds no complete checkpoint to resume from" in err
    finished_run(tmp_path / "done")
    code, out, _ = run(capsys, recipe, "--resume", f"output_dir={tmp_path / 'done'}")
    assert code == 0 and "not checked: output_dir: " in out and "nothing to resume" in out


def test_every_problem_train_would_meet_is_reported_at_once(recipe, tmp_path, capsys):
    finished_run(tmp_path / "run")
    code, _, err = run(capsys, recipe, "data.max_length=4096", "data.val_size=10", "lora.layers_to_transform=[2]")
    assert code == 2
    assert err.splitlines()[0] == f"error: {recipe}: 4 problems:"
    assert "data.max_length (command line): 4096 tokens, but this llama model has position embeddings for 2048" in err
    assert "data.val_size (command line): data.val_size 10 leaves no training examples: the data gives at most 10" in err
    assert "lora.layers_to_transform (command line): [2] names layers this model does not have" in err
    assert f"output_dir ({recipe}:4): {tmp_path / 'run'} already holds a finished run" in err


def test_recipe_problems_come_first_all_together(recipe, capsys):
    """The deeper checks need a recipe that loads: its own problems are reported first, every one of them."""
    code, _, err = run(capsys, recipe, "optimizer.lr=2e4", "max_steps=3")
    assert code == 2 and err.splitlines()[0] == f"error: {recipe}: 2 problems:"
    assert "optimizer.lr (command line): a learning rate of 20000 makes training diverge at once" in err
    assert "max_steps (command line): unknown key; max_steps is a key of training: move it there" in err


def test_a_t5_recipe_with_packing_is_refused_by_validate_too(recipe, capsys):
    code, _, err = run(capsys, recipe, "model.config={model_type: t5, d_model: 64, d_ff: 128, d_kv: 32, num_layers: 2, "
                                       "num_heads: 2}")
    assert code == 2 and f"data.packing ({recipe}:2): true, but the model is an encoder-decoder" in err


def test_a_config_key_the_model_code_reads_is_not_called_unread(recipe, capsys):
    # T5Config does not declare decoder_start_token_id, but T5's code (and qlorafx's loader) reads it
    t5 = "model.config={model_type: t5, d_model: 64, d_ff: 128, d_kv: 32, num_layers: 2, num_heads: 2, decoder_start_token_id: 5"
    code, out, err = run(capsys, recipe, "data.packing=false", t5 + "}")
    assert code == 0 and out.startswith("ok:"), err
    code, _, err = run(capsys, recipe, "data.packing=false", t5 + ", decoder_start_token_idx: 5}")
    assert code == 2
    assert "model.config.decoder_start_token_idx (command line): not a field of transformers' T5Config" in err
    assert "decoder_start_token_id (" not in err

    from qlorafx.model.loaders import MODEL_LOADERS
    from qlorafx.recipe.load import load_recipe

    loaded = load_recipe(recipe, ["data.packing=false", t5 + "}"])
    loader = MODEL_LOADERS.get("from_config")
    assert loader.config(loaded.recipe, loader.tokenizer(loaded.recipe)).decoder_start_token_id == 5  # what trains


def test_what_only_the_built_model_tells_is_said_not_claimed(recipe, capsys):
    # train refuses both ('lm_headd' names no module; KeyError 'foo' building the model): ok must not claim them
    code, out, _ = run(capsys, recipe, "lora.modules_to_save=[lm_headd]", "model.config.hidden_act=foo")
    assert code == 0
    assert "  not checked: lora.modules_to_save: module names are known only once the model is built" in out
    assert "  not checked: model.config.hidden_act: the activations transformers' model code knows are known only " \
           "with torch" in out
    code, out, _ = run(capsys, recipe)
    assert code == 0 and "modules_to_save" not in out and "hidden_act" not in out


def test_what_cannot_be_checked_is_said(recipe, capsys, monkeypatch):
    code, out, _ = run(capsys, recipe, "model.config={model_type: gpt2, n_layer: 2, n_embd: 64, n_head: 2}")
    assert code == 0
    assert "  not checked: lora.target_modules: a gpt2 model's layer names are known only once it is built" in out
    code, out, _ = run(capsys, recipe, "model.tokenizer=some-org/a-tokenizer")
    assert code == 0 and "not checked: model.tokenizer: some-org/a-tokenizer is a hub id, and validate stays " \
                         "offline" in out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, _ = run(capsys, recipe, "model.loader=pretrained", "model.path=some-org/not-on-this-machine",
                       "model.config={}")
    assert code == 0
    assert "not checked: the model's config, data.max_length and the LoRA targets: some-org/not-on-this-machine is a " \
           "hub id whose config is not in the local cache" in out


def test_a_model_config_beside_a_pretrained_base_is_refused_and_can_be_cleared(recipe, tmp_path, capsys,
                                                                               monkeypatch):
    """A pretrained base brings its own config: a model.config beside it would be silently ignored, so it
    is refused where it was written; a recipe extending a from_config one clears it with `config: null`."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = ["model.loader=pretrained", "model.path=some-org/not-on-this-machine"]
    code, _, err = run(capsys, recipe, *hub)
    assert code == 2 and "Traceback" not in err
    assert (f"model.config ({recipe}:1): model.config applies to loader from_config only, but model.loader is "
            f"pretrained (the base's own config comes from model.path); remove it, or set model.config: null where "
            f"a recipe extends a from_config one (model.config=null on the command line)") in err
    child = tmp_path / "child.yaml"
    child.write_text("extends: recipe.yaml\nmodel:\n  loader: pretrained\n  path: some-org/not-on-this-machine\n")
    code, _, err = run(capsys, child)
    assert code == 2 and f"model.config ({recipe}:1): model.config applies to loader from_config only" in err
    child.write_text(child.read_text() + "  config: null   # the base brings its own\n")
    for argv in ([child], [recipe, *hub, "model.config=null"], [recipe, *hub, "model.config={}"]):
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert "4-bit some-org/not-on-this-machine" in out


def test_a_local_model_folder_has_its_config_checked(recipe, tmp_path, capsys):
    from transformers import AutoConfig

    AutoConfig.for_model("llama", hidden_size=64, num_attention_heads=2, max_position_embeddings=128).save_pretrained(
        tmp_path / "base")
    code, _, err = run(capsys, recipe, "model.loader=pretrained", f"model.path={tmp_path / 'base'}", "model.config={}",
                       "data.max_length=256", "lora.target_modules=[qkv]")
    assert code == 2
    assert "data.max_length (command line): 256 tokens, but this llama model has position embeddings for 128" in err
    assert "lora.target_modules (command line): [qkv] matches no linear layer of this model" in err


def test_a_rope_scaling_factor_stretches_the_position_limit(recipe, tmp_path, capsys):
    # vicuna-7b-v1.5-16k's way: 4096 positions and linear RoPE scaling by 4 take 16k tokens; 4096 was the limit
    from transformers import AutoConfig

    AutoConfig.for_model("llama", hidden_size=64, num_attention_heads=2, max_position_embeddings=128,
                         rope_scaling={"rope_type": "linear", "factor": 4.0}).save_pretrained(tmp_path / "base")
    base = ["model.loader=pretrained", f"model.path={tmp_path / 'base'}", "model.config={}"]
    code, out, err = run(capsys, recipe, *base, "data.max_length=512")
    assert code == 0 and out.startswith("ok:"), err
    code, _, err = run(capsys, recipe, *base, "data.max_length=513")
    assert code == 2
    assert ("data.max_length (command line): 513 tokens, but this llama model has position embeddings for 512 "
            "(max_position_embeddings 128, stretched by its RoPE scaling); set data.max_length to 512 or less") in err


def test_train_refuses_a_misspelt_config_key_before_writing_anything(recipe, tmp_path, capsys):
    assert main(["train", str(recipe), "model.config.hiden_size=64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.config.hiden_size: not a field of transformers' LlamaConfig, so nothing would "
                          "read it; did you mean 'hidden_size'?")
    assert not (tmp_path / "run").exists()


def test_estimate_refuses_a_max_length_past_the_position_embeddings(recipe, capsys):
    assert main(["estimate", str(recipe), "data.max_length=10000000"]) == 2
    assert capsys.readouterr().err == ("error: data.max_length: 10000000 tokens, but this llama model has position "
                                       "embeddings for 2048 (max_position_embeddings); set data.max_length to 2048 or "
                                       "less\n")


def test_resume_says_what_to_run_instead(recipe, tmp_path, capsys):
    """A run that stopped before its first checkpoint: start over (a command that works, not one adding
    --overwrite to --resume); a finished run: train further from its adapter."""
    finished_run(tmp_path / "run")
    (tmp_path / "run" / "run.json").unlink()
    code, _, err = run(capsys, recipe, "--resume")
    assert code == 2 and "start it over: the same command with --overwrite in place of --resume" in err
    finished_run(tmp_path / "done")
    assert main(["train", str(recipe), f"output_dir={tmp_path / 'done'}", "--resume"]) == 0
    said = capsys.readouterr().err
    assert f"{tmp_path / 'done'} holds a finished run (run.json); nothing to resume. To train it further, start a " \
           f"new run from its adapter: qlorafx train {tmp_path / 'done' / 'recipe.yaml'} " \
           f"lora.init_from={tmp_path / 'done' / 'adapter'} output_dir={tmp_path / 'done'}-more" in said


def test_a_bundled_recipes_hub_model_is_checked_offline_from_qlorafxs_copy_of_its_config(tmp_path, capsys,
                                                                                          monkeypatch):
    from tests.conftest import REPO

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = REPO / "recipes" / "alpaca" / "llama-3.1-8b.yaml"
    code, _, err = run(capsys, recipe, f"output_dir={tmp_path / 'run'}", "lora.target_modules=[qq]",
                       "data.max_length=200000")
    assert code == 2
    assert "data.max_length (command line): 200000 tokens, but this llama model has position embeddings for 131072" in err
    assert "lora.target_modules (command line): [qq] matches no linear layer of this model" in err


def test_packing_a_model_with_recurrent_layers_is_refused(recipe, tmp_path, capsys):
    # MiniMax's linear-attention layers carry their state along the row: packed examples would read each other
    # through them whatever attention mask the collator makes (measured 0.138 off each example run alone)
    from transformers import AutoConfig

    AutoConfig.for_model("minimax", hidden_size=64, num_attention_heads=2, num_hidden_layers=2,
                         layer_types=["linear_attention", "full_attention"]).save_pretrained(tmp_path / "base")
    base = ["model.loader=pretrained", f"model.path={tmp_path / 'base'}", "model.config={}"]
    code, _, err = run(capsys, recipe, *base, "data.packing=true")
    assert code == 2
    assert ("data.packing (command line): true, but this minimax model has linear_attention layers, which carry their "
            "state from one packed example into the next (no attention mask reaches them); "
            "set data.packing: false") in err
    code, out, err = run(capsys, recipe, *base, "data.packing=false", "lora.target_modules=all-linear")
    assert "data.packing" not in err
