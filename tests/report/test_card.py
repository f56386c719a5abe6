"""The model card: every section, the right numbers, and loading code that fits the quantization."""

from __future__ import annotations

import pytest

from qlorafx.report import CARD_FILE, PLOT_FILE, write_report
from tests.report.finished_run import finished_run, metrics


@pytest.fixture
def card(tmp_path):
    run = finished_run(tmp_path, ["description=Tiny test run", "lora.target_modules=[q_proj, v_proj]"], metrics())
    report = write_report(run)
    assert report.card == run / CARD_FILE and report.plot == run / PLOT_FILE
    return report.card.read_text()


def test_sections_in_order(card):
    headings, in_code = [], False
    for line in card.splitlines():
        in_code ^= line.startswith("```")
        if line.startswith("#") and not in_code:
            headings.append(line)
    assert headings == ["# run: a QLoRA adapter", "## Method", "## Data", "## Hyperparameters", "## Results",
                        "## Load the adapter", "## Software"]
    assert card.startswith("---\nlibrary_name: peft\ntags: [qlora, lora, peft, qlorafx]\n---\n")
    assert "Tiny test run" in card


def test_method(card):
    for row in ("| base weights | 4-bit NF4, double quantization |", "| compute dtype | auto (resolved to float32) |",
                "| LoRA rank r | 16 |", "| LoRA alpha | 32 (scale 2) |", "| target modules | `q_proj, v_proj` |",
                "| trainable parameters | 34,816 of 150,208 (23.18%) |"):
        assert row in card


def test_data(card):
    for row in ("| training examples | 120 |", "| validation examples | 8 |", "| tokens that carry loss | 2,296 |",
                "| examples truncated at max_length | 3 |", "| records filtered out | 1 |",
                "| share of tokens that carry loss | 8.7% |", "| batching | packed rows, 15.3% padding |",
                "| example length in tokens | p50 189, p100 266 |", "| max_length | 320 |", "| loss on | responses only |"):
        assert row in card
    assert "/recipes/data/quickstart.jsonl` | alpaca | 129 | 128 | 26,288 |" in card


def test_hyperparameters_and_results(card):
    for row in ("| optimizer | adamw, lr 0.02, weight decay 0 |", "| length | 24 steps |",
                "| batch | 4 per device x 1 accumulation = 4 per device per step |",
                "| optimizer steps | 40 |", "| eval loss | 2.5000 -> 1.2500 (0.50x) |",
                "| eval perplexity | 12.18 -> 3.49 |", "| last train loss | 1.1000 |",
                "| throughput | 1,000 tokens/s (mean over logs) |", f"![train and eval loss, learning rate]({PLOT_FILE})"):
        assert row in card
    assert "```\n### Instruction:\nSay hi.\n\n### Response:\nHi.\n```" in card


def test_loading_code_runs_the_right_quantization(card, tmp_path):
    assert f"RUN = {str(tmp_path / 'run')!r}" in card
    assert 'quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",' in card
    assert 'AutoModelForCausalLM.from_pretrained(f"{RUN}/base_model", quantization_config=quant, dtype=torch.float32)' in card
    assert 'PeftModel.from_pretrained(base, f"{RUN}/adapter")' in card


@pytest.mark.parametrize("bits, want", [
    ("8", "quant = BitsAndBytesConfig(load_in_8bit=True)"),
    ("16", 'from_pretrained(f"{RUN}/base_model", dtype=torch.float32)'),
])
def test_loading_code_for_8_and_16_bits(tmp_path, bits, want):
    report = write_report(finished_run(tmp_path, [f"quantization.bits={bits}"], metrics()))
    card = report.card.read_text()
    assert want in card
    assert ("load_in_4bit" in card) is False


def test_a_hub_base_model_is_named_in_the_metadata(tmp_path):
    run = finished_run(tmp_path, ["model.loader=pretrained", "model.path=org/some-model", "model.revision=v2",
                                  "model.config=null"], metrics())
    card = write_report(run).card.read_text()
    assert "base_model: org/some-model\n" in card
    assert "on `org/some-model` (revision `v2`)" in card
    assert "from_pretrained('org/some-model', revision='v2', quantization_config=quant" in card


def test_without_metrics_there_is_no_plot(tmp_path):
    report = write_report(finished_run(tmp_path))
    assert report.plot is None and not (tmp_path / "run" / PLOT_FILE).exists()
    assert "No plot: the run kept no `metrics.jsonl` (add `jsonl` to `logging.backends`)." in report.card.read_text()


def test_evaluations_after_training_are_listed_but_not_plotted(tmp_path):
    import json

    later = {"step": 40, "source": "qlorafx eval", "eval_data": "held_out.jsonl", "eval_loss": 0.5,
             "eval_perplexity": 1.6487, "eval_tokens": 1234, "mc_accuracy": 0.75, "mc_questions": 8,
             "mc_file": "/data/mc.jsonl"}
    run = finished_run(tmp_path, records=[*metrics(), later])
    status = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**status, "evaluations": [later]}))
    card = write_report(run).card.read_text()
    assert "| held_out.jsonl | 0.5000 | 1.65 | 1,234 | 75.0% of 8 (`/data/mc.jsonl`) |" in card
    from qlorafx.report import read_run

    assert [r["step"] for r in read_run(run).evals] == [0, 40]  # the training-time evaluations only
