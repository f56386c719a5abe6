"""What the memory formulas need, read off the model's skeleton (meta device: no weights, no memory).

Which linear layers are quantized is decided by transformers' own rule (every nn.Linear except
the output head, tied weights and the model's keep-in-fp32 modules); which layers LoRA wraps and
which tensors train, by peft itself, wrapping the skeleton with the recipe's LoRA config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Linear layers reading the same tensor (so LoRA A's saved input is shared when there is no dropout)
SHARED_INPUT = {"q_proj", "k_proj", "v_proj", "qkv_proj", "query_key_value", "Wqkv", "c_attn", "query", "key", "value",
                "gate_proj", "up_proj", "gate_up_proj", "fc1", "w1", "w3", "dense_h_to_4h", "c_fc"}
ATTENTION_OUTPUT = {"o_proj", "out_proj", "wo"}


@dataclass
class LoraSite:
    """One tensor that LoRA layers read, in one decoder layer."""

    layer: int
    kind: str  # "shared", "attention_output" or "own"
    in_features: int
    layers: int = 0  # wrapped layers reading it
    rank_sum: int = 0  # their ranks, summed
    out_sum: int = 0  # their out_features, summed


@dataclass
class ModelShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    gated_mlp: bool
    packed_mask: bool
    attention: str = "sdpa"  # the implementation training runs: the recipe's, or attention per packed example
    quantized: list[tuple[str, int, int]] = field(default_factory=list)  # (name, numel, out_features)
    other_params: int = 0  # parameters stored unquantized (embeddings, norms, head, biases)
    buffer_bytes: int = 0  # non-parameter tensors the model holds (e.g. rotary frequencies)
    trainable: list[int] = field(default_factory=list)  # numel of each trainable tensor
    lora_params: int = 0  # of which in LoRA matrices (and DoRA magnitudes)
    lora_sites: list[LoraSite] = field(default_factory=list)

    @property
    def largest_quantized(self) -> int:
        return max((n for _, n, _ in self.quantized), default=0)


def quantized_layer_names(frame, bits: int) -> set[str]:
    """The layers transformers' bitsandbytes quantizer replaces (its own selection rule)."""
    if bits == 16:
        return set()
    import torch
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.base import HfQuantizer
    from transformers.quantizers.quantizers_utils import should_convert_module

    skip = HfQuantizer.get_modules_to_not_convert(frame, None, getattr(frame, "_keep_in_fp32_modules", None))
    return {name for name, module in frame.named_modules()  # Conv1D (GPT-2) too, as transformers' bnb replaces it
            if (type(module) is torch.nn.Linear or isinstance(module, Conv1D)) and should_convert_module(name, skip)}


def model_shape(recipe, config) -> ModelShape:
    from qlorafx.model.adapter import layer_index, layer_shape, linear_layer_names, lora_config
    from qlorafx.model.architecture import peft_task_type
    from qlorafx.model import packed_attention
    from qlorafx.model.loaders import skeleton

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    frame = skeleton(config)
    h, heads = text.hidden_size, text.num_attention_heads
    names = set(linear_layer_names(frame))
    linears = {n: m for n, m in frame.named_modules() if n in names}
    intermediate = getattr(text, "intermediate_size", None) or max(layer_shape(m)[1] for m in linears.values())
    leaves = {n.rsplit(".", 1)[-1] for n in linears}
    up_like = [m for n, m in linears.items() if layer_index(n) == 0 and layer_shape(m) == (h, intermediate)]
    per_example = packed_attention.unsupported_reason(frame, recipe) is None
    attention = packed_attention.NAME if per_example else recipe.model.attn_implementation
    shape = ModelShape(
        hidden=h, intermediate=intermediate, layers=text.num_hidden_layers, heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or h // heads, vocab=text.vocab_size,
        gated_mlp=bool(leaves & {"gate_proj", "gate_up_proj", "w3"}) or len(up_like) >= 2,
        # flash attention and attention per packed example (model/packed_attention.py) take no mask
        packed_mask=recipe.data.packing and attention in ("sdpa", "eager"),
        attention=attention,
    )
    quantized = quantized_layer_names(frame, recipe.quantization.bits)
    shape.quantized = [(n, m.weight.numel(), layer_shape(m)[1]) for n, m in frame.named_modules() if n in quantized]
    quantized_weights = {id(m.weight) for n, m in frame.named_modules() if n in quantized}
    shape.other_params = sum(p.numel() for p in frame.parameters() if id(p) not in quantized_weights)
    shape.buffer_bytes = sum(b.numel() * b.element_size() for b in frame.buffers())

    import torch
    from peft import get_peft_model

    lora = lora_config(recipe, list(linears), peft_task_type(config))
    lora.init_lora_weights, lora.eva_config = True, None  # data-driven inits change values, not sizes
    with torch.device("meta"):  # the adapter's tensors too: a 65B model's LoRA is GBs of RAM, and slow to initialise
        wrapped = get_peft_model(frame, lora)
    shape.trainable = [p.numel() for p in wrapped.parameters() if p.requires_grad]
    shape.lora_params = sum(p.numel() for n, p in wrapped.named_parameters() if p.requires_grad and ".lora_" in n)
    shape.lora_sites = _sites(wrapped)
    return shape


def _sites(wrapped) -> list[LoraSite]:
    from qlorafx.model.adapter import layer_index, layer_shape

    sites: dict[str, LoraSite] = {}
    for name, module in wrapped.named_modules():
        if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
            continue
        leaf, parent = name.rsplit(".", 1)[-1], name.rsplit(".", 1)[0]
        base = module.get_base_layer()
        in_features, out_features = layer_shape(base)
        kind = "shared" if leaf in SHARED_INPUT else "attention_output" if leaf in ATTENTION_OUTPUT else "own"
        key = f"{parent}:{in_features}" if kind == "shared" else name
        site = sites.setdefault(key, LoraSite(layer_index(name.removeprefix("base_model.model.")) or 0, kind,
                                              in_features))
        site.layers += 1
        site.rank_sum += module.r["default"]
        site.out_sum += out_features
    return list(sites.values())
