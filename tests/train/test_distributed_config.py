"""training.distributed: the sharding settings handed to the Trainer, and the rules checked up front."""

import pytest

from qlorafx.errors import UserError
from qlorafx.recipe.errors import RecipeError
from qlorafx.recipe.load import load_recipe
from qlorafx.train.distributed import deepspeed_config, sharding_arguments
from tests.conftest import REPO

FSDP = REPO / "recipes" / "multi-gpu" / "llama-3.1-8b-fsdp.yaml"


def test_fsdp_shards_per_transformer_block():
    args = sharding_arguments("fsdp")
    assert args["fsdp"] == "full_shard auto_wrap"
    assert args["fsdp_config"]["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert sharding_arguments("ddp") == {}


def test_zero3_partitions_parameters_and_gathers_them_to_save():
    zero = deepspeed_config(3)["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"]
    assert deepspeed_config(2)["zero_optimization"]["stage"] == 2
    assert "stage3_prefetch_bucket_size" not in deepspeed_config(2)["zero_optimization"]


def test_deepspeed_missing_is_a_clear_error():
    pytest.importorskip("torch")
    try:
        import deepspeed  # noqa: F401
        pytest.skip("deepspeed is installed here")
    except ImportError:
        pass
    with pytest.raises(UserError, match="training.distributed zero3 needs DeepSpeed: pip install deepspeed"):
        sharding_arguments("zero3")


def test_the_fsdp_recipe_stores_4bit_weights_in_bfloat16():
    recipe = load_recipe(FSDP).recipe
    assert (recipe.training.distributed, recipe.quantization.storage_dtype) == ("fsdp", "bfloat16")


@pytest.mark.parametrize("overrides, key, message", [
    (["quantization.storage_dtype=uint8"], "quantization.storage_dtype", "fsdp shards only floating-point tensors"),
    (["training.distributed=zero3", "quantization.storage_dtype=uint8", "optimizer.name=adamw"],
     "quantization.storage_dtype", "zero3 shards only floating-point tensors"),
    (["quantization.bits=8"], "training.distributed", "fsdp cannot shard 8-bit weights"),
    (["training.distributed=zero2"], "optimizer.name", "cannot partition bitsandbytes' paged_adamw_32bit; use adamw"),
])
def test_sharding_rules(overrides, key, message):
    with pytest.raises(RecipeError) as err:
        load_recipe(FSDP, overrides)
    [problem] = err.value.problems
    assert problem.path == key and message in problem.message
