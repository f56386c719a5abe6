"""The linear layers of a model, named from its config alone: no torch, nothing instantiated.

transformers' configs carry a tensor-parallel plan (``base_model_tp_plan``) that names each
decoder layer's projections (``layers.*.self_attn.q_proj``). For the architectures in PLANNED
that plan names every linear layer LoRA can target, once the entries that are no linear layer are
set aside; tests/model/test_layer_plan.py builds each one on the meta device and checks that the
names agree exactly. For any other architecture the names are not derived (None): `validate` says
so, and `train` checks the targets on the model's skeleton.
"""

from __future__ import annotations

from qlorafx.model.config_check import layer_count

# model_type -> (the base model's attribute in the causal-LM class, plan entries that are no linear layer)
PLANNED: dict[str, tuple[str, frozenset[str]]] = {
    "llama": ("model", frozenset()),
    "mistral": ("model", frozenset()),
    "qwen2": ("model", frozenset()),
    "qwen3": ("model", frozenset({"layers.*.self_attn.q_norm", "layers.*.self_attn.k_norm"})),
    "gemma": ("model", frozenset()),
    "gemma2": ("model", frozenset()),
    "phi": ("model", frozenset()),
    "olmo": ("model", frozenset()),
    "starcoder2": ("model", frozenset()),
    "cohere": ("model", frozenset()),
    "gpt_neox": ("gpt_neox", frozenset({"embed_in"})),
    "gptj": ("transformer", frozenset({"wte"})),
}


def linear_layer_names(config) -> list[str] | None:
    """Full module names of the linear layers LoRA can target (the output head excluded), as
    ``model.named_modules()`` would give them; None where the config alone cannot tell."""
    planned = PLANNED.get(getattr(config, "model_type", None))
    plan = getattr(config, "base_model_tp_plan", None) or {}
    count = layer_count(config)
    if planned is None or not plan or count is None:
        return None
    prefix, not_linear = planned
    names = []
    for index in range(count):
        names += [f"{prefix}.{entry.replace('*', str(index))}" for entry in plan
                  if entry.count("*") == 1 and entry not in not_linear]
    return names + [f"{prefix}.{entry}" for entry in plan if "*" not in entry and entry not in not_linear]
