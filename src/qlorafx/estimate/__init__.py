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
    paged: bool = False  # the optimizer states are in paged memory a GPU can move to CPU memory under pressure
    accumulating: bool = False  # grad_accum > 1: the gradients stay from one micro-batch to the next

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
        """The larger of the backward pass's peak and the optimizer step's. With one micro-batch a step the
        gradients grow as backward frees activations; with several, a later micro-batch's backward peak has
        the earlier ones' gradients beside it."""
        moment = self.moment(checkpointing)
        held = self.gradients if self.accumulating else 0
        return self.resident + max(moment.activations + moment.workspace + held, self.gradients + self.step_temporaries)

    def floor(self, checkpointing: bool | None = None) -> int:
        """The peak on the GPU when paged optimizer states leave it for CPU memory during forward and
        backward (the optimizer step pages them back in); the peak itself for an unpaged optimizer."""
        if not self.paged:
            return self.peak(checkpointing)
        moment = self.moment(checkpointing)
        held = self.gradients if self.accumulating else 0
        return self.weights + self.lora_params + max(moment.activations + moment.workspace + held,
                                                     self.gradients + self.step_temporaries + self.optimizer_states)


def target_compute_dtype(name: str, device: str) -> str:
    """compute_dtype 'auto' on the device the run will use: bf16 on a GPU (an Ampere or newer one; name
    float16 for older GPUs), fp32 on a CPU, whatever machine the estimate runs on."""
    if name != "auto":
        return name
    return "bfloat16" if device == "cuda" else "float32"


def estimate(recipe, shape: ModelShape, compute_dtype: str, device: str = "cpu") -> Estimate:
    q, lora, t = recipe.quantization, recipe.lora, recipe.training
    kbit = q.bits in (4, 8)
    compute = memory.BYTES[compute_dtype]
    adapter = memory.BYTES[lora.dtype]  # the trainable tensors and their gradients
    act = 4 if kbit else compute  # the fp32 norms and embeddings of a 4/8-bit base keep activations fp32
    tokens = memory.Tokens(t.micro_batch_size, recipe.data.max_length)
    trainable = sum(shape.trainable)
    lora_saved = memory.lora_activations(shape, tokens, act, lora.dropout > 0, lora.use_dora, adapter)

    def moment(checkpointing: bool) -> memory.Moment:
        return memory.backward_peak(shape, tokens, act, shape.attention, lora_saved,
                                    compute if kbit else 0, checkpointing)

    return Estimate(
        quantized_weights=sum(memory.quantized_layer_bytes(n, out, q.bits, q.double_quant) for _, n, out in shape.quantized),
        other_weights=shape.other_params * (4 if kbit else compute) + shape.buffer_bytes,
        lora_params=adapter * trainable,  # lora.dtype: fp32 (peft's default) or bf16 (qlora.py under --bf16)
        gradients=adapter * trainable,
        optimizer_states=memory.optimizer_state_bytes(recipe.optimizer.name, shape.trainable, adapter),
        step_temporaries=memory.step_temporaries(recipe.optimizer.name, trainable, adapter),
        without_checkpointing=moment(False),
        with_checkpointing=moment(True),
        checkpointing=t.gradient_checkpointing,
        # bitsandbytes' paged optimizers page only on CUDA; on a CPU they are ordinary memory
        paged=device == "cuda" and recipe.optimizer.name.startswith("paged_"),
        accumulating=t.grad_accum > 1,
    )
