"""training.distributed -> the Trainer's sharding settings. The engine is accelerate's FSDP2 path
(torch's fully_shard); qlorafx only chooses its configuration.

ddp: every process holds the whole (4-bit) model; gradients are averaged.
fsdp: FSDP2 full sharding of parameters, gradients and optimizer state: torch's fully_shard on each
  decoder layer, the embeddings, the final norm with the head, and the root (accelerate's
  fsdp2_prepare_model); 4-bit weights must be stored in a float dtype (quantization.storage_dtype)
  to shard.
DeepSpeed ZeRO is not offered: accelerate selects it only on GPUs (on CPU its process state has no
backend for it), so it could not be run here; docs/multi-gpu.md says what was tried.
"""

from __future__ import annotations

from typing import Any

FSDP_CONFIG = {
    "version": 2,
    "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # the model's own decoder-layer classes (_no_split_modules)
    "reshard_after_forward": True,  # full sharding: a layer's gathered weights are freed after its forward
    "cpu_ram_efficient_loading": False,  # accelerate skips it for 4-bit models anyway; every rank loads its copy
    "state_dict_type": "FULL_STATE_DICT",  # checkpoints and the adapter saved whole, loadable without FSDP
}


def sharding_arguments(strategy: str) -> dict[str, Any]:
    """Keyword arguments for TrainingArguments."""
    if strategy == "fsdp":
        return {"fsdp": True, "fsdp_config": dict(FSDP_CONFIG)}
    return {}


def shard_on_cpu_too(trainer) -> None:
    """accelerate selects FSDP only on accelerators: on CPU processes it falls back to DDP, silently, so a
    recipe asking for fsdp would run unsharded. Its FSDP2 code is device-agnostic and torch's fully_shard
    runs on CPU over gloo, so qlorafx selects FSDP for CPU processes too, with the plugin the Trainer made
    from the same arguments. On GPUs accelerate has selected it already and this does nothing."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if trainer.args.fsdp_plugin_args is None or trainer.is_fsdp_enabled or state.distributed_type != DistributedType.MULTI_CPU:
        return
    state.fsdp_plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
    # where accelerate records it on GPUs: the process state that every later AcceleratorState() reads
    state.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    trainer.is_fsdp_enabled = True


def check_shardable(model) -> None:
    """Refuse, before any weight loads (``model``: the meta-device skeleton), a model that FSDP2 cannot shard
    as accelerate lays it out: a parameter shared by several modules must sit in one unit, and accelerate
    keeps only the input embeddings tied to the output head together. T5's one embedding, shared by the
    encoder, the decoder (and the head), failed at the first forward with torch's 'shared with a parameter
    already managed by another FSDP group' traceback."""
    from qlorafx.errors import UserError

    owners: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(parameter), []).append(name)
    embeddings = getattr(model.get_input_embeddings(), "weight", None)
    head = getattr(getattr(model, "get_output_embeddings", lambda: None)(), "weight", None)
    kept_together = {id(embeddings)} if embeddings is not None and embeddings is head else set()
    shared = [names for key, names in owners.items()
              if len(names) > 2 or (len(names) == 2 and key not in kept_together)]
    if shared:
        listing = "; ".join(" = ".join(names) for names in shared)
        raise UserError(f"training.distributed: fsdp cannot shard {type(model).__name__}: its modules share "
                        f"parameters ({listing}), which FSDP2 would place in different units; use distributed: ddp")


def full_trainable_state(model) -> dict:
    """The trained tensors of an FSDP-sharded model, whole, for saving the adapter: a collective, so
    every process calls it (only the adapter is gathered, never the 4-bit base)."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    # the evaluation after training leaves a unit that keeps its gathered parameters after a forward (the
    # root, holding the head) with those registered in place of its shards, and their storage already
    # freed: a trained head (lora.modules_to_save) was saved as an empty tensor, which safetensors refused.
    # Resharding puts the shards back, as the Trainer does before it builds the optimizer.
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
    return {name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().cpu()
            for name, p in model.named_parameters() if p.requires_grad}


def sharding_report(log=print):
    """A Trainer callback that says, once the Trainer has wrapped the model, how it is sharded: what a user
    (and a test) reads to know that training.distributed fsdp sharded the base rather than running it whole.
    (A factory: this module is imported by `qlorafx validate`, which must not import transformers.)"""
    from transformers import TrainerCallback

    class ShardingReport(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            from bitsandbytes.nn import Linear4bit
            from torch.distributed.fsdp import FSDPModule
            from torch.distributed.tensor import DTensor

            units = sum(isinstance(m, FSDPModule) for m in model.modules())
            if not units or not state.is_world_process_zero:
                return
            four_bit = [m.weight for m in model.modules() if isinstance(m, Linear4bit)]
            sharded = [p for p in four_bit if isinstance(p, DTensor)]
            dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in four_bit})
            log(f"fsdp: {units} units over {args.world_size} processes; {len(sharded)} of {len(four_bit)} 4-bit "
                f"weights sharded (stored as {', '.join(dtypes)})")

    return ShardingReport()
