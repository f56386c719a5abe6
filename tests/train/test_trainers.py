"""The causal_lm trainer's own additions to transformers' Trainer: a batch with no target, and the
tokens it counts."""

from __future__ import annotations

import json

import pytest
import torch

from qlorafx.recipe.load import load_recipe
from qlorafx.finetune import train
from tests.train.tiny import tiny_recipe


def test_a_step_whose_labels_are_all_masked_has_loss_0_not_a_divergence(tmp_path):
    """Examples whose response max_length cut away carry no target. A step made of them only sums a
    loss of 0 over 0 targets: before issue 9 that was 0/0, a NaN loss with NaN gradients, and the
    loss guard stopped the run saying the learning rate was too high."""
    long_prompt = {"instruction": "Repeat after me: " + "la " * 200, "input": "", "output": "la"}
    short = [{"instruction": f"Say {i}.", "input": "", "output": f"{i}!"} for i in range(2)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [long_prompt] * 6 + short))
    lines = []
    loaded = load_recipe(tiny_recipe(tmp_path), [
        f"data.datasets=[{{path: {data}, format: alpaca}}]", "data.val_size=0", "data.packing=false",
        "data.shuffle=false", "training.micro_batch_size=1", "training.max_steps=8", "logging.every=1",
        "logging.backends=[jsonl]", "logging.sample_max_new_tokens=0"])
    result = train(loaded.recipe, loaded.to_yaml(), log=lines.append)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 8 and losses.count(0.0) == 6 and all(loss > 0 for loss in losses if loss != 0.0), losses
    assert sum("loss is exactly 0" in line and "are all labels masked?" in line for line in lines) == 1
    assert all(torch.isfinite(p).all() for n, p in result.model.named_parameters() if "lora_" in n)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"


def _logs(tmp_path, *overrides):
    tmp_path.mkdir()
    loaded = load_recipe(tiny_recipe(tmp_path), ["training.max_steps=4", "logging.every=1", "data.val_size=0",
                                                 "logging.backends=[jsonl]", "logging.sample_max_new_tokens=0",
                                                 *overrides])
    train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    return [(r["loss"], r["grad_norm"]) for r in records if "loss" in r]


def test_micro_batch_4_equals_2_accumulated_twice(tmp_path):
    """A causal LM, packed and shuffled as by default: two micro-batches of 2 rows accumulated are
    one step over the same 4 rows, normalised by the same token count, so each step's loss and
    gradient norm are those of one micro-batch of 4, to float rounding (measured: equal to 6 decimals;
    each micro-batch averaged on its own instead of over the step's tokens: 6.092 against 6.109)."""
    one = _logs(tmp_path / "one", "training.micro_batch_size=4")
    accumulated = _logs(tmp_path / "accumulated", "training.micro_batch_size=2", "training.grad_accum=2")
    assert len(one) == len(accumulated) == 4
    for (loss, norm), (loss_acc, norm_acc) in zip(one, accumulated):
        assert loss_acc == pytest.approx(loss, rel=1e-5) and norm_acc == pytest.approx(norm, rel=1e-5), (one, accumulated)


def test_a_short_run_logs_its_loss_evaluates_once_at_the_end_and_eval_agrees(tmp_path, capsys):
    """Three steps with logging.every 10 and eval_every 3: the last step's loss is logged all the same
    (console, metrics.jsonl, the card); the evaluation at step 3 is the final one, not repeated; its loss is
    the per-token mean over the split, which `qlorafx eval` gives too (the Trainer's own mean of batch
    means differs on this split, of unpacked examples one per batch)."""
    from qlorafx.cli.main import main
    from qlorafx.data.build import prepare
    from qlorafx.evaluate.loss import token_loss
    from qlorafx.infer.trained_run import load_quantized
    from qlorafx.report.run import trained_run

    lines = []
    loaded = load_recipe(tiny_recipe(tmp_path), [
        "training.max_steps=3", "training.eval_every=3", "logging.every=10", "data.packing=false",
        "training.micro_batch_size=1", "logging.backends=[console, jsonl]", "logging.sample_max_new_tokens=0"])
    result = train(loaded.recipe, loaded.to_yaml(), log=lines.append)
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    [last] = [r for r in records if "loss" in r]
    assert last["step"] == 3
    [end] = [r for r in records if "train_loss" in r]
    assert end["train_loss"] == pytest.approx(last["loss"], rel=1e-6)  # the mean over the run's 3 steps
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 3]  # once before training, once at its last step
    assert f"loss={last['loss']:.4f}" in capsys.readouterr().err  # the console's progress bar
    assert "| last train loss | n/a |" not in (run / "README.md").read_text()

    assert main(["eval", str(run)]) == 0
    shown = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert float(shown["eval_loss"]) == pytest.approx(result.summary.eval_loss_after, abs=2e-4)
    assert result.summary.eval_loss_after == pytest.approx(evals[1]["eval_loss"], rel=1e-9)

    model = load_quantized(trained_run(run))  # what the Trainer's mean of batch means would have logged
    val = prepare(loaded.recipe, result.tokenizer, lambda *_: None).val_examples
    batch_means = [token_loss(model, result.tokenizer, [example])["eval_loss"] for example in val]
    assert abs(sum(batch_means) / len(batch_means) - result.summary.eval_loss_after) > 1e-3  # 5x the tolerance above


@pytest.mark.parametrize("head_only_where_loss", [True, False], ids=["labelled-head", "full-head"])
def test_a_t5_micro_batch_with_no_target_has_loss_0_and_zero_gradients(tmp_path, head_only_where_loss):
    """T5 averages its own loss over the batch's targets (CrossEntropyLoss, mean) and the Trainer gives it no
    token count, so a micro-batch with none was 0/0: a NaN loss whose NaN gradients reach every LoRA weight.
    It must be what the causal path gives: 0, with zero gradients; the batch beside it trains as before."""
    from qlorafx.data.collate import IGNORE_INDEX
    from tests.train.test_labelled_head import _trainer
    from tests.train.tiny import tiny_t5_recipe

    trainer = _trainer(tiny_t5_recipe(tmp_path), [], tmp_path)
    trainer.head_only_where_loss = head_only_where_loss
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    model = trainer.model
    model.train()
    batches, num_items = trainer.get_batch_samples(iter(trainer.get_train_dataloader()), 2, trainer.args.device)
    empty = {**batches[0], "labels": torch.full_like(batches[0]["labels"], IGNORE_INDEX)}

    model.zero_grad()
    loss = trainer.training_step(model, dict(empty), num_items)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert float(loss) == 0.0
    assert len(grads) >= 6 and all(g is not None and torch.equal(g, torch.zeros_like(g)) for g in grads.values())

    # a batch with targets after it: a finite, positive loss and gradients, as without the empty batch
    real = float(trainer.training_step(model, dict(batches[1]), num_items))
    assert 0 < real < float("inf")
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)

    # evaluation: the batch with no target adds nothing, rather than a NaN
    model.eval()
    with torch.no_grad():
        eval_loss = trainer.compute_loss(model, dict(empty))
    assert float(eval_loss) == 0.0
