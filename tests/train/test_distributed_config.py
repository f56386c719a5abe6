"""training.distributed: the sharding settings handed to the Trainer, and the rules checked up front."""

import pytest

from qlorafx.recipe.errors import RecipeError
from qlorafx.recipe.load import load_recipe
from qlorafx.train.distributed import sharding_arguments
from tests.conftest import REPO

FSDP = REPO / "recipes" / "multi-gpu" / "llama-3.1-8b-fsdp.yaml"


def test_fsdp_is_fsdp2_wrapped_per_transformer_block():
    args = sharding_arguments("fsdp")
    assert args["fsdp"] is True
    assert args["fsdp_config"]["version"] == 2 and args["fsdp_config"]["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert sharding_arguments("ddp") == {}


def test_the_fsdp_recipe_stores_4bit_weights_in_its_compute_dtype():
    recipe = load_recipe(FSDP).recipe
    assert (recipe.training.distributed, recipe.quantization.storage_dtype, recipe.quantization.compute_dtype) == \
        ("fsdp", "bfloat16", "bfloat16")


@pytest.mark.parametrize("overrides, key, message", [
    (["quantization.storage_dtype=uint8"], "quantization.storage_dtype", "fsdp shards only floating-point tensors"),
    (["quantization.bits=8"], "training.distributed", "fsdp cannot shard 8-bit weights"),
    (["training.distributed=zero3"], "training.distributed", "zero3 (DeepSpeed ZeRO) is not offered: it has not run "
                                                               "with qlorafx"),
    (["training.distributed=zero2"], "training.distributed", "zero2 (DeepSpeed ZeRO) is not offered"),
    # trained, then failed when saving the adapter (peft's conversion needs the whole model): refused up front
    (["lora.init_lora_weights=olora"], "lora.init_lora_weights", "'olora' changes the base, so its adapter is converted "
                                                                 "to plain LoRA when saved, which peft does only on a "
                                                                 "whole model"),
    (["lora.init_lora_weights=pissa_niter_4", "quantization.bits=16"], "lora.init_lora_weights",
     "'pissa_niter_4' changes the base"),
])
def test_sharding_rules(overrides, key, message):
    with pytest.raises(RecipeError) as err:
        load_recipe(FSDP, overrides)
    [problem] = err.value.problems
    assert problem.path == key and message in problem.message


def test_fsdp_refuses_a_model_whose_modules_share_a_parameter_beyond_embeddings_and_head():
    """accelerate's FSDP2 layout keeps the input embeddings with a head tied to them in one unit (a tied Llama
    trains: measured), but T5's embedding is shared by the encoder, the decoder and the head, and sharding it
    failed at the first forward with torch's traceback."""
    from transformers import AutoConfig

    from qlorafx.errors import UserError
    from qlorafx.model.loaders import skeleton
    from qlorafx.train.distributed import check_shardable

    llama = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
    for tied in (False, True):
        check_shardable(skeleton(AutoConfig.for_model("llama", tie_word_embeddings=tied, **llama)))
    t5 = AutoConfig.for_model("t5", d_model=64, d_ff=128, d_kv=32, num_layers=2, num_decoder_layers=2, num_heads=2)
    with pytest.raises(UserError, match=r"training.distributed: fsdp cannot shard T5ForConditionalGeneration: its modules "
                                        r"share parameters \(shared.weight = encoder.embed_tokens.weight = "
                                        r"decoder.embed_tokens.weight = lm_head.weight\), .*use distributed: ddp"):
        check_shardable(skeleton(t5))
