"""qlorafx estimate: peak training memory from a recipe and its model's config, before any weight loads."""

from __future__ import annotations

from dataclasses import dataclass

from qlorafx.estimate import memory
from qlorafx.estimate.shape import ModelShape


@dataclass(frozen=True)
class Estimate:
    """Bytes of each part of peak training memory (docs/estimate.md)."""

    quantized_weights: int  # 4/8-bit weights with their quantization constants
    other_weights: int  # unquantized: embeddings, norms, head, biases, buffers
    lora_params: int  # every trainable tensor (LoRA A, B, DoRA magnitudes, modules_to_save, biases)
    gradients: int
    optimizer_states: int
    step_temporaries: int  # the optimizer step's own transients
    without_checkpointing: memory.Moment  # activations and workspace at the peak of forward + backward
    with_checkpointing: memory.Moment
    checkpointing: bool  # what the recipe asks for

    @property
    def weights(self) -> int:
        return self.quantized_weights + self.other_weights

    @property
    def resident(self) -> int:
        """Held for the whole run: weights, trainable parameters and optimizer states."""
        return self.weights + self.lora_params + self.optimizer_states

    def moment(self, checkpointing: bool | None = None) -> memory.Moment:
        on = self.checkpointing if checkpointing is None else checkpointing
        return self.with_checkpointing if on else self.without_checkpointing

    def peak(self, checkpointing: bool | None = None) -> int:
        """The larger of the backward pass's peak and the optimizer step's."""
        moment = self.moment(checkpointing)
        return self.resident + max(moment.activations + moment.workspace, self.gradients + self.step_temporaries)


def estimate(recipe, shape: ModelShape, compute_dtype: str) -> Estimate:
    q, lora, t = recipe.quantization, recipe.lora, recipe.training
    kbit = q.bits in (4, 8)
    compute = memory.BYTES[compute_dtype]
    act = 4 if kbit else compute  # the fp32 norms and embeddings of a 4/8-bit base keep activations fp32
    tokens = memory.Tokens(t.micro_batch_size, recipe.data.max_length)
    trainable = sum(shape.trainable)
    lora_saved = memory.lora_activations(shape, tokens, act, lora.dropout > 0, lora.use_dora)

    def moment(checkpointing: bool) -> memory.Moment:
        return memory.backward_peak(shape, tokens, act, recipe.model.attn_implementation, lora_saved,
                                    compute if kbit else 0, checkpointing)

    return Estimate(
        quantized_weights=sum(memory.quantized_layer_bytes(n, out, q.bits, q.double_quant) for _, n, out in shape.quantized),
        other_weights=shape.other_params * (4 if kbit else compute) + shape.buffer_bytes,
        lora_params=4 * trainable,  # peft keeps adapter weights in fp32
        gradients=4 * trainable,
        optimizer_states=memory.optimizer_state_bytes(recipe.optimizer.name, shape.trainable),
        step_temporaries=memory.step_temporaries(recipe.optimizer.name, trainable),
        without_checkpointing=moment(False),
        with_checkpointing=moment(True),
        checkpointing=t.gradient_checkpointing,
    )
