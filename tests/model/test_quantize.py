import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from qlorafx.model.quantize import keep_weights_trainable_on_cpu, quantization_config, resolve_compute_dtype
from qlorafx.recipe.schema import QuantizationSection


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU choice")
def test_auto_compute_dtype_is_float32_on_cpu():
    assert resolve_compute_dtype("auto") == "float32"
    assert resolve_compute_dtype("bfloat16") == "bfloat16"


def test_bits_map_to_bitsandbytes_configs():
    four = quantization_config(QuantizationSection(bits=4, quant_type="fp4", double_quant=False), "float32")
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "fp4" and not four.bnb_4bit_use_double_quant
    assert four.bnb_4bit_compute_dtype == torch.float32
    nf4 = quantization_config(QuantizationSection(), "bfloat16")
    assert nf4.bnb_4bit_quant_type == "nf4" and nf4.bnb_4bit_use_double_quant and nf4.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config(QuantizationSection(bits=8), "float32").load_in_8bit
    assert quantization_config(QuantizationSection(bits=16), "float32") is None


def _lora_grads(tmp_path, evaluate_first: bool) -> dict[str, torch.Tensor]:
    from peft import LoraConfig, get_peft_model

    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=64)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "base")
    model = AutoModelForCausalLM.from_pretrained(
        tmp_path / "base", quantization_config=quantization_config(QuantizationSection(), "float32"), dtype=torch.float32)
    keep_weights_trainable_on_cpu(model)
    torch.manual_seed(1)
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    ids = torch.randint(0, 64, (2, 12))
    if evaluate_first:
        model.eval()
        with torch.no_grad():
            model(input_ids=ids)
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_evaluating_before_training_leaves_gradients_intact(tmp_path):
    """bitsandbytes repacks 4-bit weights for CPU inference on AVX512-BF16 CPUs, after which the
    backward pass through frozen layers is wrong; qlorafx evaluates before training, so it must not."""
    fresh = _lora_grads(tmp_path / "a", evaluate_first=False)
    after_eval = _lora_grads(tmp_path / "b", evaluate_first=True)
    first_layer = [n for n in fresh if "layers.0.self_attn.q_proj.lora_A" in n]
    assert first_layer and fresh[first_layer[0]].abs().sum() > 0
    for name in fresh:
        assert torch.allclose(fresh[name], after_eval[name], atol=1e-6), name
