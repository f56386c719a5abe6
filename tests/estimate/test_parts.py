"""The estimate's parameter and optimizer parts, byte for byte against the real thing: the tiny model
loaded and wrapped as `qlorafx train` does it (4-bit, 8-bit, 16-bit), its real Linear4bit / Int8
weights with their quantization state, its real LoRA tensors and gradients, and each optimizer's
real state after one step."""

from __future__ import annotations

import pytest
import torch

from qlorafx.estimate import estimate
from qlorafx.estimate.shape import model_shape
from qlorafx.model.adapter import add_lora
from qlorafx.model.loaders import MODEL_LOADERS
from qlorafx.model.quantize import keep_weights_trainable_on_cpu, quantization_config
from qlorafx.recipe.load import load_recipe
from qlorafx.train.optimizers import OPTIMIZERS
from tests.train.tiny import tiny_recipe


def storages(tensors) -> dict[int, int]:
    """data pointer -> bytes of each distinct storage (shared ones once)."""
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if torch.is_tensor(t)}


def quant_tensors(weight) -> list:
    """A quantized weight and everything bitsandbytes keeps beside it."""
    if hasattr(weight, "quant_state"):  # Params4bit
        qs = weight.quant_state
        nested = [qs.state2.absmax, qs.state2.code] if qs.nested else []
        return [weight, qs.absmax, qs.code, qs.offset, *nested]
    return [weight, weight.SCB]  # Int8Params (CB is the weight's own storage)


def built(tmp_path, overrides):
    recipe = load_recipe(tiny_recipe(tmp_path), overrides).recipe
    loader = MODEL_LOADERS.get(recipe.model.loader)
    tokenizer = loader.tokenizer(recipe)
    config = loader.config(recipe, tokenizer)
    (tmp_path / "run").mkdir()
    model = loader.model(recipe, tokenizer, tmp_path / "run", "float32", quantization_config(recipe.quantization, "float32"))
    keep_weights_trainable_on_cpu(model)
    return recipe, add_lora(model, recipe), estimate(recipe, model_shape(recipe, config), "float32")


@pytest.mark.parametrize("overrides", [
    [], ["quantization.double_quant=false"], ["quantization.quant_type=fp4"], ["quantization.bits=8"],
    ["quantization.bits=16"], ["lora.use_dora=true", "lora.modules_to_save=[lm_head]", "lora.layers_to_transform=[0]"],
    ["lora.dtype=bfloat16", "lora.modules_to_save=[lm_head]"],
], ids=["nf4-dq", "nf4", "fp4-dq", "int8", "16bit", "dora-save-layers", "bf16-adapter"])
def test_weights_and_trainable_parameters_match_the_built_model(tmp_path, overrides):
    recipe, model, e = built(tmp_path, overrides)
    quantized = [p for p in model.parameters() if type(p).__name__ in ("Params4bit", "Int8Params")]
    assert bool(quantized) == (recipe.quantization.bits != 16)
    quant = storages(t for w in quantized for t in quant_tensors(w))
    trainable = [p for p in model.parameters() if p.requires_grad]
    other = storages([*(p for p in model.parameters() if not p.requires_grad), *model.buffers()])
    other = {ptr: n for ptr, n in other.items() if ptr not in quant}
    assert e.quantized_weights == sum(quant.values())
    assert e.other_weights == sum(other.values())
    assert e.lora_params == sum(storages(trainable).values())
    assert {p.dtype for p in trainable} == {getattr(torch, recipe.lora.dtype)}


@pytest.mark.parametrize("double_quant, constant_bits", [(True, 0.127), (False, 0.5)])
def test_quantization_constants_cost_what_the_qlora_paper_says(double_quant, constant_bits):
    """The paper: 32/64 = 0.5 bits a parameter for fp32 block constants; double quantization brings
    it to 8/64 + 32/(64*256) = 0.127 bits (on a 4096 x 4096 layer the per-layer tables vanish)."""
    from qlorafx.estimate.memory import quantized_layer_bytes

    n = 4096 * 4096
    extra_bits = (quantized_layer_bytes(n, 4096, 4, double_quant) - n / 2) * 8 / n
    assert extra_bits == pytest.approx(constant_bits, abs=0.001)


@pytest.mark.parametrize("name, dtype", [*((name, "float32") for name in OPTIMIZERS.keys()),
                                         ("adamw", "bfloat16"), ("paged_adamw_32bit", "bfloat16")])
def test_gradients_and_optimizer_states_match_after_a_step(tmp_path, name, dtype):
    # r=48: some LoRA matrices have fewer than 4096 values (bitsandbytes keeps their state in fp32), some more.
    # bf16 adapters: torch's AdamW keeps bf16 moments, bitsandbytes' 32-bit one fp32 moments.
    recipe, model, e = built(tmp_path, [f"optimizer.name={name}", "lora.r=48", f"lora.dtype={dtype}"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    cls, kwargs = OPTIMIZERS.get(name)(recipe.optimizer)
    optimizer = cls(trainable, **kwargs)
    ids = torch.randint(0, 259, (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    assert e.gradients == sum(storages(p.grad for p in trainable).values())
    states = storages(v for state in optimizer.state.values() for v in state.values())
    assert e.optimizer_states == sum(states.values())
    if "8bit" in name:
        assert {s["state1"].dtype for s in optimizer.state.values()} == {torch.uint8, torch.float32}
