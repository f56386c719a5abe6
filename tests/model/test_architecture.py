"""Causal or encoder-decoder, from the config alone: the Auto class, peft's task type, the skeleton."""

from __future__ import annotations

import pytest
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

from qlorafx.model.architecture import auto_class, is_encoder_decoder, peft_task_type
from qlorafx.model.loaders import skeleton

LLAMA = AutoConfig.for_model("llama", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                             vocab_size=300)
T5 = AutoConfig.for_model("t5", d_model=32, d_ff=64, d_kv=16, num_layers=1, num_heads=2, vocab_size=300)


@pytest.mark.parametrize("config, encoder_decoder, auto, task, head", [
    (LLAMA, False, AutoModelForCausalLM, "CAUSAL_LM", "LlamaForCausalLM"),
    (T5, True, AutoModelForSeq2SeqLM, "SEQ_2_SEQ_LM", "T5ForConditionalGeneration"),
])
def test_the_config_decides(config, encoder_decoder, auto, task, head):
    assert is_encoder_decoder(config) is encoder_decoder
    assert auto_class(config) is auto and peft_task_type(config) == task
    frame = skeleton(config)  # on the meta device: no memory, the right head
    assert type(frame).__name__ == head and next(frame.parameters()).device.type == "meta"
