"""The linear layers named from a config alone agree exactly with the model built on the meta device."""

from __future__ import annotations

import pytest

from qlorafx.model.layer_plan import PLANNED, linear_layer_names

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)


@pytest.mark.parametrize("model_type", sorted(PLANNED))
def test_the_plan_names_every_linear_layer_of_the_model(model_type):
    from transformers import AutoConfig

    from qlorafx.model.adapter import linear_layer_names as built_names
    from qlorafx.model.loaders import skeleton

    config = AutoConfig.for_model(model_type, **TINY)
    derived = linear_layer_names(config)
    assert derived is not None
    assert sorted(derived) == sorted(built_names(skeleton(config)))


def test_an_architecture_without_a_verified_plan_is_not_guessed():
    from transformers import AutoConfig

    assert linear_layer_names(AutoConfig.for_model("gpt2", n_layer=2)) is None  # Conv1D layers, no plan
    assert linear_layer_names(AutoConfig.for_model("qwen2_moe", num_hidden_layers=2)) is None  # plan lacks shared experts
