"""The recipe's quantization section -> a transformers BitsAndBytesConfig and dtypes."""

from __future__ import annotations


def resolve_compute_dtype(name: str) -> str:
    """'auto': bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPU.

    float32 on CPU is not a guess: 4-bit training in bfloat16 ran ~35x slower on these CPUs.
    """
    if name != "auto":
        return name
    import torch

    if not torch.cuda.is_available():
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def quantization_config(section, compute_dtype: str):
    """BitsAndBytesConfig for bits 4 or 8, None for 16 (plain LoRA on an unquantized base)."""
    if section.bits == 16:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if section.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=section.quant_type,
        bnb_4bit_use_double_quant=section.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
        bnb_4bit_quant_storage=getattr(torch, section.storage_dtype),
    )


def weights_dtype(section, compute_dtype: str) -> str:
    """dtype of the unquantized weights: the storage dtype when 4-bit weights are stored as floats,
    so FSDP sees one dtype across all parameters; else the compute dtype."""
    return section.storage_dtype if section.bits == 4 and section.storage_dtype != "uint8" else compute_dtype


def keep_weights_trainable_on_cpu(model) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference; returns how many layers.

    On CPUs with AVX512-BF16, a Linear4bit called in eval mode without grad (an evaluation, a
    generation) permanently converts its weight to a packed inference layout. Training after
    that runs through a kernel with no backward: the gradient through every frozen layer is
    silently wrong (torch only warns "an autograd kernel was not registered"). qlorafx
    evaluates before training, so it must keep the trainable layout.
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count
