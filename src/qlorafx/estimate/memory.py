"""Peak training memory by arithmetic: bytes of each part, from a ModelShape and the recipe.

No torch here; docs/estimate.md derives each formula. The parts:

  quantized weights   4-bit: n/2 bytes + quantization constants; 8-bit: n bytes + a scale per row
  other weights       everything not quantized (embeddings, norms, head, biases): fp32 on a 4/8-bit base
  LoRA                trainable parameters, their gradients, the optimizer's states
  activations         what autograd keeps for the backward pass, for micro_batch_size x max_length tokens
  workspace           the largest short-lived tensors (the loss's logits gradients, a dequantized weight)

peak = weights + LoRA parameters + optimizer states + max(activations + workspace, gradients + step temporaries)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BLOCK_4BIT = 64  # transformers' bnb_4bit blocksize
BLOCK_NESTED = 256  # double quantization: one fp32 absmax per 256 8-bit absmaxes
NF4_CODE, NESTED_CODE = 16 * 4, 256 * 4  # per-layer lookup tables (fp32)
BLOCK_OPTIM_8BIT, MIN_8BIT_SIZE, QMAP = 256, 4096, 256 * 4  # bitsandbytes' 8-bit optimizer state
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def quantized_layer_bytes(n: int, out_features: int, bits: int, double_quant: bool) -> int:
    """One linear layer's stored weight and quantization constants."""
    if bits == 8:  # int8 weight, one fp32 scale per output row
        return n + 4 * out_features
    blocks = math.ceil(n / BLOCK_4BIT)
    packed = math.ceil(n / 2)
    if not double_quant:  # fp32 absmax per block
        return packed + 4 * blocks + NF4_CODE
    # 8-bit absmax per block + its own fp32 absmax per 256 blocks, the nested code table and an fp32 offset
    return packed + blocks + 4 * math.ceil(blocks / BLOCK_NESTED) + NESTED_CODE + 4 + NF4_CODE


def optimizer_state_bytes(name: str, numels: list[int], param_bytes: int = 4) -> int:
    """The optimizer's state after its first step, for trainable tensors of these sizes. torch's
    optimizers keep their states in the parameters' dtype; bitsandbytes' in fp32 or 8 bits, whatever it is."""
    if name == "adamw":  # exp_avg, exp_avg_sq, and a 0-d fp32 step per tensor
        return sum(2 * param_bytes * n + 4 for n in numels)
    if name == "sgd":  # one momentum buffer
        return sum(param_bytes * n for n in numels)
    if name == "paged_adamw_32bit":  # bitsandbytes keeps the step as a Python int
        return sum(8 * n for n in numels)
    states = {"adamw_8bit": 2, "paged_adamw_8bit": 2, "lion_8bit": 1, "paged_lion_8bit": 1}[name]
    total, eight_bit = 0, False
    for n in numels:
        if n < MIN_8BIT_SIZE:  # bitsandbytes keeps small tensors' states in fp32
            total += states * 4 * n
        else:  # uint8 states, one fp32 absmax per 256 values each
            total += states * (n + 4 * math.ceil(n / BLOCK_OPTIM_8BIT))
            eight_bit = True
    return total + (states * QMAP if eight_bit else 0)  # the quantile maps, shared by all tensors


def step_temporaries(name: str, trainable: int, param_bytes: int = 4) -> int:
    """Short-lived tensors of one optimizer step: torch's foreach AdamW/SGD work on copies of the
    whole parameter list; bitsandbytes updates in place, tensor by tensor."""
    return {"adamw": 2, "sgd": 1}.get(name, 0) * param_bytes * trainable


@dataclass(frozen=True)
class Tokens:
    batch: int
    length: int

    @property
    def count(self) -> int:
        return self.batch * self.length


def layer_activations(shape, tokens: Tokens, act: int, attention: str) -> int:
    """Bytes one decoder layer of the frozen base keeps for backward (a Llama-style block; see
    docs/estimate.md). act: bytes of an activation (4 on a 4/8-bit base, whose fp32 norms and
    embeddings keep the whole stream in fp32)."""
    t, h, i = tokens.count, shape.hidden, shape.intermediate
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    saved = 2 * (t * h * 4 + t * 4)  # the two RMSNorms: fp32 input and 1/rms
    saved += t * (q + 2 * kv) * act + t * q * act  # attention's q, k, v and its output
    saved += tokens.batch * shape.heads * tokens.length * 4  # its log-sum-exp (fp32)
    if attention == "eager":  # the probabilities, fp32 and cast
        saved += tokens.batch * shape.heads * tokens.length ** 2 * (4 + act)
    elif attention == "sdpa":  # sdpa turns the (padding or packing) mask into an fp32 one per call and keeps it
        saved += tokens.batch * tokens.length ** 2 * 4
    saved += (3 if shape.gated_mlp else 1) * t * i * act  # activation-function inputs and outputs
    return saved


def lora_activations(shape, tokens: Tokens, act: int, dropout: bool, dora: bool, lora: int = 4) -> dict[int, int]:
    """Per layer index: what the LoRA branches add. A needs its input, cast to the adapter's dtype
    (``lora`` bytes): one tensor per input site (q, k and v read the same one) unless dropout gives
    each layer its own copy and a 1-byte mask; the attention output is kept by attention already
    when no cast is needed. B needs A's output (r values a token). DoRA keeps the base and LoRA
    outputs for its rescaling."""
    t, found = tokens.count, {}
    for site in shape.lora_sites:
        saved = site.rank_sum * t * lora
        if dropout:
            saved += site.layers * t * site.in_features * (lora + 1)
        elif not (site.kind == "attention_output" and act == lora):
            saved += t * site.in_features * lora
        if dora:
            saved += 2 * t * site.out_sum * 4
        found[site.layer] = found.get(site.layer, 0) + saved
    return found


@dataclass(frozen=True)
class Moment:
    """The peak moment of forward + backward: tensors kept for backward, and short-lived ones."""

    activations: int
    workspace: int


def backward_peak(shape, tokens: Tokens, act: int, attention: str, lora: dict[int, int], compute: int,
                  checkpointing: bool) -> Moment:
    """Without checkpointing, the peak is the start of backward: every layer's activations are kept
    and the loss's gradient w.r.t. the logits (two fp32 vocab-wide tensors) is being made. With it,
    layers keep only their inputs, and the peak is either that moment or the recomputation of one
    layer (by then the loss's tensors are gone), whichever is larger."""
    t = tokens.count
    per_layer = layer_activations(shape, tokens, act, attention)
    loss = t * shape.vocab * 4  # the log-softmax output the loss keeps (fp32)
    outside = t * shape.hidden * 4 + t * 4  # the final norm
    outside += 2 * t * shape.head_dim * 4  # rotary cos and sin, per row (positions restart in packed rows)
    if shape.packed_mask:
        outside += tokens.batch * tokens.length ** 2  # packing's block-diagonal bool mask, shared by all layers
    head = 2 * t * shape.vocab * 4
    layer = t * shape.intermediate * act  # the MLP's input gradient, while its activations are still kept
    dequantized = shape.largest_quantized * compute  # a 4/8-bit weight, dequantized for a matmul
    if not checkpointing:
        return Moment(shape.layers * per_layer + sum(lora.values()) + outside + loss, head + dequantized)
    inputs = shape.layers * t * shape.hidden * act
    at_loss = Moment(inputs + outside + loss, head)
    in_layer = Moment(inputs + outside + per_layer + max(lora.values(), default=0), layer + dequantized)
    return max(at_loss, in_layer, key=lambda m: m.activations + m.workspace)
