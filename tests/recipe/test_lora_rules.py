"""LoRA options in the recipe: each refusal names its key and where it was set, says why and what to
do, and comes before torch is even imported."""

from __future__ import annotations

import pytest

from qlorafx.recipe.load import load_recipe

CL = "command line"


def test_defaults_are_peft_defaults(minimal):
    lora = load_recipe(minimal).recipe.lora
    assert (lora.bias, lora.modules_to_save, lora.layers_to_transform) == ("none", [], None)
    assert (lora.use_dora, lora.use_rslora, lora.init_lora_weights, lora.init_from) == (False, False, True, None)


def test_options_that_peft_runs_are_accepted(minimal):
    lora = load_recipe(minimal, ["lora.bias=lora_only", "lora.modules_to_save=[lm_head]", "lora.layers_to_transform=[0, 2]",
                                 "lora.use_dora=true", "lora.use_rslora=true", "lora.init_lora_weights=gaussian"]).recipe.lora
    assert (lora.bias, lora.modules_to_save, lora.layers_to_transform) == ("lora_only", ["lm_head"], [0, 2])
    assert load_recipe(minimal, ["quantization.bits=16", "lora.init_lora_weights=pissa_niter_16"]).recipe.lora.init_lora_weights == "pissa_niter_16"
    assert load_recipe(minimal, ["lora.init_lora_weights=false"]).recipe.lora.init_lora_weights is False


@pytest.mark.parametrize("overrides, key, message", [
    (["quantization.bits=8", "lora.use_dora=true"], "lora.use_dora",
     "DoRA on an 8-bit base fails inside bitsandbytes' int8 matmul (its scale state is lost); "
     "use quantization.bits: 4 or 16, or use_dora: false"),
    (["lora.init_lora_weights=pissa"], "lora.init_lora_weights",
     "'pissa' is computed from full-precision weights, which the 4-bit base does not have; use quantization.bits: 16, "
     "or an init that works on a quantized base: true, false, gaussian, olora, eva"),
    (["quantization.bits=16", "lora.init_lora_weights=olora", "lora.use_dora=true", "lora.modules_to_save=[lm_head]"],
     "lora.init_lora_weights",
     "'olora' changes the base, so the saved adapter is converted to plain LoRA on the original base, which cannot "
     "carry lora.use_dora, lora.modules_to_save; drop them or use another init"),
    (["lora.init_from=adapter", "lora.init_lora_weights=gaussian"], "lora.init_lora_weights",
     "lora.init_from continues an existing adapter, whose weights replace any init; remove init_lora_weights "
     "('gaussian') or init_from"),
    (["lora.init_lora_weights=loftq"], "lora.init_lora_weights",
     "'loftq' is not run by qlorafx: peft's LoftQ on a 4-bit base runs on CUDA only, and on a 16-bit base needs a "
     "separate quantize-and-save step; use one of true, false, gaussian, olora, pissa, pissa_niter_N, orthogonal, "
     "eva, mica"),
    (["lora.init_lora_weights=pisa"], "lora.init_lora_weights",
     "unknown init 'pisa': expected one of true, false, gaussian, olora, pissa, pissa_niter_N, orthogonal, eva, mica"),
    (["lora.bias=some"], "lora.bias", "input should be 'none', 'all' or 'lora_only'; found 'some'"),
    (["lora.layers_to_transform=[-1]"], "lora.layers_to_transform.0", "input should be greater than or equal to 0; found -1"),
    (["lora.layers_to_transform=[0]", "lora.target_modules=.*q_proj"], "lora",
     "layers_to_transform works with target_modules all-linear or a list of names; with a regex, put the layer "
     "numbers in the regex (e.g. .*layers\\.(0|1)\\..*_proj)"),
])
def test_refusals_name_the_key_and_the_fix(minimal, problems, overrides, key, message):
    assert problems(minimal, overrides) == {key: (message, CL)}


def test_a_rule_across_sections_points_at_the_line_that_set_it(write, problems):
    path = write("r.yaml", """
        model: {loader: from_config, config: {model_type: llama}}
        quantization: {bits: 8}
        lora:
          use_dora: true
        data: {datasets: [{path: train.jsonl}]}
        output_dir: out
    """)
    found = problems(path)
    assert list(found) == ["lora.use_dora"] and found["lora.use_dora"][1] == f"{path}:4"


def test_validate_refuses_without_importing_torch(write):
    from tests.cli.test_cli import heavy_modules_after

    path = write("r.yaml", """
        model: {loader: from_config, config: {model_type: llama}}
        lora: {init_lora_weights: orthogonal}
        data: {datasets: [{path: train.jsonl}]}
        output_dir: out
    """)
    code, heavy = heavy_modules_after(["validate", str(path)])
    assert code == 2 and heavy == []
