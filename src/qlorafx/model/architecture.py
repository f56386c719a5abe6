"""Which kind of language model a config describes, and what follows from it.

Causal LMs (Llama, Qwen2, ...) read prompt and response as one sequence; encoder-decoder models
(the T5 family) read the prompt with the encoder and write the response with the decoder. The
config says which (``is_encoder_decoder``); everything that differs between the two asks here.
"""

from __future__ import annotations


def is_encoder_decoder(config) -> bool:
    return bool(getattr(config, "is_encoder_decoder", False))


def auto_class(config):
    """The transformers Auto class that loads this architecture with its language-model head."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if is_encoder_decoder(config) else AutoModelForCausalLM


def peft_task_type(config) -> str:
    return "SEQ_2_SEQ_LM" if is_encoder_decoder(config) else "CAUSAL_LM"
