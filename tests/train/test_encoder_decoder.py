"""Encoder-decoder models (the T5 family), end to end: a tiny T5 built locally trains with 4-bit
LoRA on Alpaca-format data (the prompt in the encoder, the response as the decoder's target), and
eval, generate, chat and merge work on its run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qlorafx.cli.main import main
from qlorafx.recipe.load import load_recipe
from qlorafx.finetune import train
from tests.train.tiny import QUICKSTART_DATA, tiny_t5_recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run directory, training result): 24 steps, about half a minute on 2 CPU cores."""
    tmp = tmp_path_factory.mktemp("t5")
    loaded = load_recipe(tiny_t5_recipe(tmp))
    return Path(loaded.recipe.output_dir), train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)


def test_a_tiny_t5_trains_with_4bit_lora_and_its_loss_falls(trained):
    run, result = trained
    s = result.summary
    assert s.steps == 24 and s.eval_loss_after < 0.8 * s.eval_loss_before, (s.eval_loss_before, s.eval_loss_after)
    model = result.model
    assert type(model).__name__ == "PeftModelForSeq2SeqLM"
    base = model.get_base_model()
    for stack in (base.encoder, base.decoder):  # both stacks are stored in 4-bit NF4 under their adapters
        q = stack.block[0].layer[0].SelfAttention.q.base_layer
        assert type(q).__name__ == "Linear4bit" and q.weight.quant_type == "nf4"
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_2_SEQ_LM"
    # all-linear: the attention and feed-forward layers of encoder, decoder and cross-attention, never the head
    assert set(config["target_modules"]) == {"q", "k", "v", "o", "wi_0", "wi_1", "wo"}
    assert not any("lm_head" in name for name, _ in model.named_parameters() if "lora_" in name)
    card = (run / "README.md").read_text()
    assert "base = AutoModelForSeq2SeqLM.from_pretrained(" in card


def test_eval_reproduces_the_runs_final_validation_loss(trained, capsys):
    run, result = trained
    assert main(["eval", str(run)]) == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines() if ": " in line)
    assert float(printed["eval_loss"]) == pytest.approx(result.summary.eval_loss_after, abs=1e-4)


def test_multiple_choice_scores_the_decoders_first_position(trained, tmp_path, capsys):
    from qlorafx.evaluate.choice import letter_ids, read_questions
    from qlorafx.infer.generate import load_tokenizer
    from qlorafx.report.run import trained_run

    run, result = trained
    mc = tmp_path / "mc.jsonl"
    mc.write_text("".join(json.dumps(q) + "\n" for q in [
        {"question": "Which sound does the cat make?", "choices": ["moo", "meow", "woof"], "answer": 1},
        {"question": "What color is the sky?", "choices": ["blue", "green"], "answer": "A"},
        {"question": "Name a fruit.", "choices": ["stone", "lemon", "chair", "cloud"], "answer": 1}]))
    assert main(["eval", str(run), "--no-loss", "--mc", str(mc)]) == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines() if ": " in line)
    # scored independently with the model still in memory: encoder reads the prompt, the decoder's
    # first logits (after its start token) pick among the letters
    tokenizer, model = load_tokenizer(trained_run(run)), result.model.eval()
    right = 0
    for prompt, count, answer in read_questions(mc):
        with torch.no_grad():
            logits = model(input_ids=tokenizer(prompt, return_tensors="pt")["input_ids"],
                           decoder_input_ids=torch.tensor([[model.config.decoder_start_token_id]])).logits[0, 0]
        right += int(logits[letter_ids(tokenizer, count)].argmax().item() == answer)
    assert float(printed["mc_accuracy"]) == pytest.approx(right / 3, abs=1e-4) and printed["mc_questions"] == "3"


def test_generate_prompts_the_encoder_as_training_did_and_answers_as_the_trained_model(trained, tmp_path, capsys):
    from qlorafx.data.build import prepare
    from qlorafx.infer.generate import Generator, Sampling, generate_text
    from qlorafx.report.run import trained_run

    run, result = trained
    record = json.loads(QUICKSTART_DATA.read_text().splitlines()[0])
    generator = Generator(trained_run(run), Sampling(max_new_tokens=12))
    encoded = generator.encode({"instruction": record["instruction"], "input": record["input"]})
    recipe = load_recipe(run / "recipe.yaml").recipe
    examples = prepare(recipe, generator.tokenizer, lambda line: None, encoder_decoder=True)
    [trained_on] = [e for e in examples.train_examples + examples.val_examples
                    if generator.tokenizer.decode(e.input_ids, skip_special_tokens=True) == encoded.text]
    assert encoded.ids == trained_on.input_ids  # the inference prompt is the encoder's input, special tokens and all
    assert generator.tokenizer.decode(trained_on.labels, skip_special_tokens=True) == record["output"]

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"instruction": record["instruction"], "input": record["input"]}) + "\n")
    assert main(["generate", str(run), "--file", str(prompts), "--max-new-tokens", "12"]) == 0
    [answer] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # the reloaded 4-bit base + adapter answers as the model in memory after training did
    assert answer["output"] == generate_text(result.model, generator.tokenizer, encoded.ids, 12)
    assert answer["output"]  # the decoder's tokens, not the prompt's width cut off them


def test_chat_keeps_the_history_in_the_encoders_prompt(trained, monkeypatch, capsys):
    import io

    run, _ = trained
    monkeypatch.setattr("sys.stdin", io.StringIO("Name a primary color.\nAnd another one?\n"))
    assert main(["chat", str(run), "--max-new-tokens", "6", "--json"]) == 0
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["prompt"].endswith("Name a primary color.\n\n### Response: ")
    # the second prompt holds the first exchange, its answer as the assistant's turn
    assert second["prompt"].startswith(first["prompt"] + first["output"])
    assert second["prompt"].endswith("And another one?\n\n### Response: ")


def test_merge_gives_base_plus_adapter_and_loads_as_seq2seq(trained, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    run, _ = trained
    out = tmp_path / "merged"
    assert main(["merge", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "AutoModelForSeq2SeqLM.from_pretrained loads it" in printed

    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["### Instruction:\nWhat sound does a cow make?", "A cow says"], return_tensors="pt", padding=True)
    decoder = tokenizer(["A cow", "moo"], return_tensors="pt", padding=True)
    inputs = {**batch, "decoder_input_ids": decoder["input_ids"], "decoder_attention_mask": decoder["attention_mask"]}
    with torch.no_grad():
        merged = AutoModelForSeq2SeqLM.from_pretrained(out, dtype=torch.float32).eval()(**inputs).logits
        base = AutoModelForSeq2SeqLM.from_pretrained(run / "base_model", dtype=torch.float32)
        want = PeftModel.from_pretrained(base, run / "adapter").eval()(**inputs).logits
        with_base_only = AutoModelForSeq2SeqLM.from_pretrained(run / "base_model", dtype=torch.float32).eval()(**inputs).logits
    assert (merged - want).abs().max().item() < 1e-4
    assert (with_base_only - want).abs().max().item() > 1e-2  # the adapter matters, so the check above has teeth


def test_estimate_says_it_does_not_model_encoder_decoders(trained, capsys):
    run, _ = trained
    assert main(["estimate", str(run / "recipe.yaml")]) == 2
    err = capsys.readouterr().err
    assert "model t5 is an encoder-decoder (T5 family); qlorafx estimate models decoder-only" in err
    assert "Traceback" not in err


def test_grad_accum_and_processes_do_not_scale_the_loss(tmp_path):
    """T5 averages its loss per micro-batch: the Trainer must divide by grad_accum and not multiply by
    the process count (measured before the fix: step-1 loss and grad norm exactly doubled by either)."""
    from tests.cli.test_cli import qlorafx

    common = ["training.max_steps=2", "logging.every=1", "logging.sample_max_new_tokens=0", "logging.backends=[jsonl]",
              "data.shuffle=false", "data.val_size=16"]
    runs = {"one": ["training.micro_batch_size=4"],
            "accumulated": ["training.micro_batch_size=2", "training.grad_accum=2"],
            "two processes": ["training.micro_batch_size=2", "--nproc", "2"]}
    first = {}
    for name, options in runs.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        done = qlorafx("train", tiny_t5_recipe(folder), *common, *options, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        records = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
        step_1 = next(r for r in records if r.get("step") == 1 and "loss" in r)
        first[name] = (step_1["loss"], step_1["grad_norm"], next(r["eval_loss"] for r in records if "eval_loss" in r))
    one = first.pop("one")
    for name, measured in first.items():  # the same 4 examples; only per-micro-batch averaging differs
        for want, got in zip(one, measured):
            assert abs(got - want) < 0.1 * want, (name, one, measured)
