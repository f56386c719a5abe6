import pytest
import torch
from transformers import LlamaConfig

from qlorafx.model.adapter import TargetError, add_lora, check_targets, linear_layer_names, matched_layers
from qlorafx.model.loaders import skeleton
from qlorafx.recipe.load import load_recipe
from tests.train.tiny import tiny_recipe

CONFIG = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=2, vocab_size=259)
NAMES = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.mlp.down_proj",
         "model.layers.1.self_attn.q_proj"]


def test_linear_layers_exclude_the_output_head():
    names = linear_layer_names(skeleton(CONFIG))
    assert len(names) == 14 and "lm_head" not in names
    assert {n.rsplit(".", 1)[-1] for n in names} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.mark.parametrize("targets, expected", [
    ("all-linear", NAMES),
    (["q_proj"], [NAMES[0], NAMES[3]]),
    (["mlp.down_proj", "k_proj"], [NAMES[1], NAMES[2]]),
    (r".*layers\.1\..*", [NAMES[3]]),
    (["proj"], []),  # a list matches whole name parts, not substrings (peft's rule)
])
def test_matching_follows_peft(targets, expected):
    assert matched_layers(NAMES, targets) == expected


def test_targets_that_match_nothing_list_the_layers_there_are():
    with pytest.raises(TargetError) as err:
        check_targets(skeleton(CONFIG), ["query", "value"])
    assert str(err.value) == (
        "lora.target_modules [query, value] matches no linear layer of this model; its linear layers are "
        "named down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj (or use 'all-linear')"
    )


def test_all_linear_never_targets_the_output_head(tmp_path):
    from transformers import AutoModelForCausalLM

    recipe = load_recipe(tiny_recipe(tmp_path), ["quantization.bits=16"]).recipe
    model = add_lora(AutoModelForCausalLM.from_config(CONFIG), recipe)
    wrapped = {name.rsplit(".lora_A", 1)[0] for name, _ in model.named_modules() if name.endswith(".lora_A")}
    assert len(wrapped) == 14 and not any("lm_head" in name for name in wrapped)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_bad_targets_fail_before_the_run_directory_is_made(tmp_path):
    from qlorafx.finetune import train

    loaded = load_recipe(tiny_recipe(tmp_path), ["lora.target_modules=[query]"])
    with pytest.raises(TargetError, match="named down_proj, gate_proj"):
        train(loaded.recipe, loaded.to_yaml(), log=lambda *_: None)
    assert not (tmp_path / "run").exists()


def test_a_bfloat16_adapter_trains_on_a_4bit_base(tmp_path):
    """lora.dtype bfloat16 (qlora.py under --bf16): the trained tensors and their gradients are bf16, the
    4-bit base's output stays in its dtype, and AdamW steps lower the loss on a fixed batch."""
    from qlorafx.model.loaders import MODEL_LOADERS
    from qlorafx.model.quantize import keep_weights_trainable_on_cpu, quantization_config

    recipe = load_recipe(tiny_recipe(tmp_path), ["lora.dtype=bfloat16"]).recipe
    loader = MODEL_LOADERS.get(recipe.model.loader)
    (tmp_path / "run").mkdir()
    base = loader.model(recipe, loader.tokenizer(recipe), tmp_path / "run", "float32",
                        quantization_config(recipe.quantization, "float32"))
    keep_weights_trainable_on_cpu(base)
    model = add_lora(base, recipe)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {p.dtype for p in trainable} == {torch.bfloat16}
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    ids = torch.randint(3, 259, (2, 24), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(6):
        out = model(input_ids=ids, labels=ids)
        assert out.logits.dtype == torch.float32
        out.loss.backward()
        assert {p.grad.dtype for p in trainable} == {torch.bfloat16}
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.loss.item())
    assert losses[-1] < 0.9 * losses[0], losses
