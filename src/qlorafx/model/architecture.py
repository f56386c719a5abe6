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


def has_language_model(config) -> bool:
    """Whether auto_class can build this config at all, asked of transformers' name tables (no torch):
    a vit or clip config builds no language model, and train would refuse it once torch has loaded."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)

    names = MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES if is_encoder_decoder(config) else MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    return getattr(config, "model_type", None) in names


def peft_task_type(config) -> str:
    return "SEQ_2_SEQ_LM" if is_encoder_decoder(config) else "CAUSAL_LM"
