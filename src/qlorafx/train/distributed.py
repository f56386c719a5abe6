"""training.distributed -> the Trainer's sharding settings. The engines are transformers' FSDP
integration and DeepSpeed; qlorafx only chooses their configuration.

ddp: every process holds the whole (4-bit) model; gradients are averaged.
fsdp: full sharding of parameters, gradients and optimizer state, wrapped per transformer
  block; 4-bit weights must be stored in a float dtype (quantization.storage_dtype) to shard.
zero2 / zero3: DeepSpeed ZeRO stage 2 (optimizer state and gradients sharded) or 3 (parameters
  too; the same storage rule as FSDP). DeepSpeed is an optional package.
"""

from __future__ import annotations

from typing import Any

from qlorafx.errors import UserError

FSDP_CONFIG = {
    "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
    "use_orig_params": False,  # peft's frozen and trainable parameters share wrapped units
    "cpu_ram_efficient_loading": True,  # rank 0 loads the weights, the others receive them
    "sync_module_states": True,
    "backward_prefetch": "backward_pre",
    "offload_params": False,
}


def deepspeed_config(stage: int) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True,
                            "reduce_bucket_size": "auto"}
    if stage == 3:
        zero |= {"stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                 "stage3_gather_16bit_weights_on_model_save": True}
    # "auto": the Trainer fills these from its own arguments, so the recipe stays the one source
    return {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
            "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}


def sharding_arguments(strategy: str) -> dict[str, Any]:
    """Keyword arguments for TrainingArguments."""
    if strategy == "fsdp":
        return {"fsdp": "full_shard auto_wrap", "fsdp_config": dict(FSDP_CONFIG)}
    if strategy in ("zero2", "zero3"):
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise UserError(f"training.distributed {strategy} needs DeepSpeed: pip install deepspeed "
                            "(on a machine with CUDA), or use distributed: ddp or fsdp") from None
        return {"deepspeed": deepspeed_config(int(strategy[-1]))}
    return {}
