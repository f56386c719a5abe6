"""Where the loaders put the weights."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from qlorafx.model.loaders import load_weights
from qlorafx.model.quantize import quantization_config
from tests.data.helpers import recipe


def test_each_process_loads_the_4bit_model_onto_its_own_gpu(tmp_path, monkeypatch):
    """Under torchrun, the process with LOCAL_RANK 1 must quantize its copy onto cuda:1: a 4-bit model
    cannot be moved once loaded, and accelerate refuses to train one on another process's device. The
    call into transformers is recorded (this machine has no GPU); on one, it would load there."""
    LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=64).save_pretrained(tmp_path)
    asked = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(lambda cls, path, **kw: asked.update(kw)))
    r = recipe([{"path": str(tmp_path / "d.jsonl")}])
    for local_rank in ("0", "1", "3"):
        monkeypatch.setenv("LOCAL_RANK", local_rank)
        load_weights(str(tmp_path), r, "bfloat16", quantization_config(r.quantization, "bfloat16"))
        assert asked["device_map"] == {"": int(local_rank)}
