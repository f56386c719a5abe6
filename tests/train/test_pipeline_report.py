"""A run ends with its report: README.md (the model card) and curves.png, from the run's own files."""

from __future__ import annotations

import json

from qlorafx.report import CARD_FILE, PLOT_FILE
from tests.train.tiny import QUICKSTART_DATA


def test_a_finished_run_has_a_model_card_and_a_plot(tracked):
    loaded, run_dir, _, _ = tracked
    status = json.loads((run_dir / "run.json").read_text())
    card = (run_dir / CARD_FILE).read_text()
    assert (run_dir / PLOT_FILE).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    trainable, total = status["trainable_params"], status["total_params"]
    # LoRA r=16 on every linear layer of the tiny Llama (hidden 64, MLP 128, 2 layers): r * (in + out) each
    per_layer = 4 * 16 * (64 + 64) + 2 * 16 * (64 + 128) + 16 * (128 + 64)  # q k v o, gate up, down
    assert trainable == 2 * per_layer == 34_816
    assert f"| trainable parameters | {trainable:,} of {total:,} ({trainable / total:.2%}) |" in card
    records = len(QUICKSTART_DATA.read_text().splitlines())
    assert f"| training examples | {records - 8:,} |" in card  # val_size 8 in the tiny recipe
    assert "| validation examples | 8 |" in card
    assert f"| `{QUICKSTART_DATA}` | alpaca | {records:,} | {records:,} |" in card
    before, after = status["eval_loss_before"], status["eval_loss_after"]
    assert f"| eval loss | {before:.4f} -> {after:.4f} ({after / before:.2f}x) |" in card
    assert f"![train and eval loss, learning rate]({PLOT_FILE})" in card


def test_the_cards_loading_code_loads_the_trained_adapter(tracked):
    import re

    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    _, run_dir, _, _ = tracked
    [code] = re.findall(r"```python\n(.*?)```", (run_dir / CARD_FILE).read_text(), re.S)
    scope: dict = {}
    exec(code, scope)  # the snippet exactly as a reader would paste it
    model, tokenizer = scope["model"], scope["tokenizer"]
    assert isinstance(model, PeftModel)
    saved = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    loaded = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(loaded) == len(saved) > 0
    for name, tensor in saved.items():
        [match] = [v for k, v in loaded.items() if k.replace(".default", "") == name]
        assert torch.equal(match, tensor)
    with torch.no_grad():
        logits = model(**tokenizer(["A cow says"], return_tensors="pt")).logits
    assert torch.isfinite(logits).all()
