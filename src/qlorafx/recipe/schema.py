"""The recipe: one pydantic model per section, all frozen, all forbidding unknown keys.

Cross-field rules live on the model they concern. Component names (formats, optimizers,
schedulers, loaders, trainers, backends) are checked against their registries here, all by
one type, ``registry_key``, so a typo is reported before any weight loads. Nothing in this module imports torch.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, ValidationInfo, WithJsonSchema, field_validator, model_validator

from qlorafx.data.formats import FORMATS
from qlorafx.model.loaders import FROM_CONFIG, MODEL_LOADERS, PRETRAINED
from qlorafx.model.lora_support import check_init, incompatibilities, mutates_base
from qlorafx.registry import registry_key
from qlorafx.section import Section
from qlorafx.train.backends import BACKENDS
from qlorafx.train.optimizers import OPTIMIZERS
from qlorafx.train.schedulers import SCHEDULERS
from qlorafx.train.trainers import TRAINERS


class ModelSection(Section):
    path: str | None = Field(None, description="Hub id or local folder of the base model (loader 'pretrained').")
    loader: registry_key(MODEL_LOADERS) = Field(PRETRAINED, description="Model loader: 'pretrained' (from path) or 'from_config' (random weights, for tests and demos).")
    config: Annotated[dict[str, Any], WithJsonSchema({"anyOf": [{"type": "object"}, {"type": "null"}]})] = Field(
        default_factory=dict, description="For loader 'from_config' only: model_type plus config fields of a "
                                          "transformers model. null clears a config inherited through extends.")
    tokenizer: str | None = Field(None, description="Tokenizer folder or hub id; default: the model's own, or the built-in byte tokenizer for 'from_config'.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of the model.")
    trust_remote_code: bool = Field(False, description="Run model code shipped with a hub checkpoint. Off unless a recipe turns it on.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field("sdpa", description="Attention kernel.")

    @field_validator("config", mode="before")
    @classmethod
    def _null_is_none(cls, value: Any) -> Any:
        # a recipe that extends a from_config one clears the inherited mapping with `config: null`
        # (an empty mapping merges into it and leaves it whole)
        return {} if value is None else value

    @field_validator("config")
    @classmethod
    def _only_for_from_config(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # a pretrained base brings its own config: one written here would be silently ignored
        loader = info.data.get("loader")
        if value and loader is not None and loader != FROM_CONFIG:
            raise ValueError(f"model.config applies to loader from_config only, but model.loader is {loader} (the "
                             f"base's own config comes from model.path); remove it, or set model.config: null where "
                             f"a recipe extends a from_config one (model.config=null on the command line)")
        return value

    @model_validator(mode="after")
    def _loader_needs(self) -> "ModelSection":
        if self.loader == PRETRAINED and not self.path:
            raise ValueError("loader 'pretrained' needs model.path (a hub id or local folder)")
        if self.loader == FROM_CONFIG and "model_type" not in self.config:
            raise ValueError("loader 'from_config' needs model.config.model_type (e.g. llama)")
        return self


class QuantizationSection(Section):
    bits: Literal[4, 8, 16] = Field(4, description="4 = QLoRA, 8 = LLM.int8 base, 16 = plain LoRA on an unquantized base.")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type; NF4 is the QLoRA paper's. Unused at 8 or 16 bits.")
    double_quant: bool = Field(True, description="Quantize the quantization constants too. Unused at 8 or 16 bits.")
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto: bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPU."
    )
    storage_dtype: Literal["uint8", "bfloat16", "float16", "float32"] = Field(
        "uint8", description="Container type of the packed 4-bit weights. FSDP shards only floating-point "
                             "tensors: set it to the compute dtype (e.g. bfloat16) for them."
    )

    @model_validator(mode="after")
    def _fp4_is_four_bit(self) -> "QuantizationSection":
        # nf4 and double_quant are defaults and simply unused at 8 or 16 bits (so `bits=8` works
        # as an override on any recipe); fp4 asks for something that 8 or 16 bits cannot give.
        if self.quant_type == "fp4" and self.bits != 4:
            raise ValueError(f"quant_type fp4 is a 4-bit data type, but bits is {self.bits}; set bits: 4 or quant_type: nf4")
        return self


class LoraSection(Section):
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: float = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: Union[list[str], str] = Field(
        "all-linear", description="'all-linear' (every linear layer but the output head), a list of module names, or a regex."
    )
    bias: Literal["none", "all", "lora_only"] = Field(
        "none", description="Biases that train too: none; all (every bias of the model); lora_only (of the wrapped layers)."
    )
    modules_to_save: list[str] = Field(
        default_factory=list, description="Modules trained in full and saved with the adapter (e.g. [lm_head]); "
                                          "on a 4- or 8-bit base only unquantized ones."
    )
    layers_to_transform: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="Only these decoder layers (from 0) get LoRA; default all. Not with a regex target."
    )
    use_dora: bool = Field(False, description="DoRA: also train each wrapped layer's weight magnitude. Not on an 8-bit base.")
    use_rslora: bool = Field(False, description="Rank-stabilized scale alpha / sqrt(r) instead of alpha / r.")
    init_lora_weights: Union[bool, str] = Field(
        True, description="true (A random, B zero), false, gaussian, olora, eva; with bits 16 also pissa, "
                          "pissa_niter_N, orthogonal, mica (see docs/recipes.md)."
    )
    init_from: str | None = Field(
        None, description="A PEFT LoRA adapter folder to continue training (e.g. runs/x/adapter); its r, alpha, "
                          "targets and options must match this section."
    )
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="dtype of the trained tensors (and their gradients): float32, peft's default, or "
                               "bfloat16, as the QLoRA paper's qlora.py keeps them under --bf16 (half the memory)."
    )

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("an empty list targets nothing; give module names or 'all-linear'")
        if isinstance(v, str):
            try:
                re.compile(v)
            except re.error as err:
                raise ValueError(f"not a valid regex ({err}); give 'all-linear', a list of module names, or a regex") from None
        return v

    _check_init = field_validator("init_lora_weights")(lambda cls, v: check_init(v))

    @model_validator(mode="after")
    def _layers_need_names(self) -> "LoraSection":
        # peft filters layers by index only for named targets; a regex names whole paths itself
        if self.layers_to_transform is not None and isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            raise ValueError("layers_to_transform works with target_modules all-linear or a list of names; with a regex, "
                             "put the layer numbers in the regex (e.g. .*layers\\.(0|1)\\..*_proj)")
        return self


def _dataset_format(value: Any) -> Any:
    # 'format' picks the entry's section (and so its options); alpaca when it is left out
    return value.get("format", "alpaca") if isinstance(value, dict) else getattr(value, "format", None)


DatasetSection = Annotated[
    Union[tuple(Annotated[FORMATS.get(key).section, Tag(key)] for key in FORMATS.keys())],
    Discriminator(_dataset_format),
]


class DataSection(Section):
    datasets: list[DatasetSection] = Field(min_length=1, description="Training datasets; each names its format.")
    max_length: int = Field(1024, gt=0, description="Longest example in tokens (and the packed row length).")
    length_policy: Literal["truncate", "drop"] = Field("truncate", description="What to do with longer examples; either way they are counted.")
    train_on_inputs: bool = Field(False, description="Also train on prompt tokens (default: loss on responses only).")
    val_size: float = Field(0.0, ge=0, description="Validation split: a fraction below 1, or a count of examples.")
    packing: bool = Field(True, description="Pack examples into max_length rows that cannot attend across examples.")
    group_by_length: bool = Field(False, description="Without packing: batch examples of similar length together.")
    shuffle: bool = Field(True, description="Reshuffle every epoch; false keeps the one seeded order qlorafx draws.")
    cache_dir: str | None = Field(None, description="Tokenized-data cache; default $QLORAFX_CACHE or ~/.cache/qlorafx.")

    @field_validator("val_size")
    @classmethod
    def _fraction_or_count(cls, v: float) -> float:
        if v >= 1 and v != int(v):
            raise ValueError("val_size is a fraction below 1 or a whole count of examples")
        return v

    @model_validator(mode="after")
    def _one_batching(self) -> "DataSection":
        if self.packing and self.group_by_length:
            raise ValueError("packing and group_by_length are alternatives; set packing: false to group by length")
        if self.group_by_length and not self.shuffle:
            raise ValueError("group_by_length draws its own order; it needs shuffle: true")
        return self


class OptimizerSection(Section):
    name: registry_key(OPTIMIZERS) = Field("paged_adamw_32bit", description="Optimizer (registry key).")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay.")

    @field_validator("lr")
    @classmethod
    def _below_one(cls, v: float) -> float:
        # no optimizer qlorafx runs trains at a rate of 1 or more: the first steps diverge. 1e4 for 1e-4 is a
        # lost minus sign, so say what was probably meant.
        if v >= 1:
            mantissa, exponent = f"{v:e}".split("e")
            meant = f"; did you mean {float(mantissa):g}e-{int(exponent)}?" if int(exponent) > 0 else ""
            raise ValueError(f"a learning rate of {v:g} makes training diverge at once; learning rates are below 1 "
                             f"(the QLoRA paper uses 2e-4 and 1e-4){meant}")
        return v


class SchedulerSection(Section):
    name: registry_key(SCHEDULERS) = Field("constant", description="Learning-rate schedule (registry key).")
    warmup_steps: int | None = Field(None, ge=0, description="Warm-up length in optimizer steps.")
    warmup_ratio: float | None = Field(None, ge=0, lt=1, description="Warm-up length as a fraction of all steps.")

    @model_validator(mode="after")
    def _one_warmup(self) -> "SchedulerSection":
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise ValueError("set warmup_steps or warmup_ratio, not both")
        return self


class TrainingSection(Section):
    epochs: float | None = Field(None, gt=0, description="Passes over the training data (default 1 when max_steps is unset).")
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps; overrides epochs.")
    micro_batch_size: int = Field(4, gt=0, description="Examples per forward pass.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    max_grad_norm: float = Field(0.3, ge=0, description="Gradient clipping norm (0 disables).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    eval_every: int | None = Field(None, gt=0, description="Evaluate on the validation split every N steps.")
    save_every: int = Field(200, gt=0, description="Write a resumable checkpoint every N steps (and always at the end).")
    keep_checkpoints: int = Field(2, gt=0, description="How many of the newest checkpoints to keep.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for weights initialised here, data split and order.")
    distributed: Literal["ddp", "fsdp"] = Field(
        "ddp", description="With several processes (--nproc, --nnodes, torchrun): plain data parallel, or FSDP2 full "
                           "sharding of the base (a float storage_dtype). DeepSpeed ZeRO is not offered (docs/multi-gpu.md).")
    trainer: registry_key(TRAINERS) = Field("causal_lm", description="Training engine (registry key).")

    @field_validator("distributed", mode="before")
    @classmethod
    def _not_zero(cls, v):
        if v in ("zero2", "zero3"):
            raise ValueError(f"{v} (DeepSpeed ZeRO) is not offered: it has not run with qlorafx (accelerate selects "
                             "DeepSpeed only on GPUs, and no multi-GPU check exists yet; docs/multi-gpu.md); use fsdp, "
                             "which shards parameters, gradients and optimizer state as ZeRO-3 does")
        return v

    @model_validator(mode="after")
    def _one_length(self) -> "TrainingSection":
        if self.epochs is not None and self.max_steps is not None:
            raise ValueError("set epochs or max_steps, not both")
        return self


class WandbSection(Section):
    """Used when logging.backends lists wandb."""

    project: str = Field("qlorafx", description="W&B project the run is logged to.")
    entity: str | None = Field(None, description="W&B team or user; default: your default entity.")
    run_name: str | None = Field(None, description="W&B run name; default: the run directory's name.")
    tags: list[str] = Field(default_factory=list, description="Tags on the W&B run.")
    mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="online: sync while training; offline: write locally, `wandb sync` later; "
                          "disabled: log nothing. Default: $WANDB_MODE, else online."
    )


class LoggingSection(Section):
    every: int = Field(10, gt=0, description="Log metrics every N optimizer steps.")
    backends: list[registry_key(BACKENDS)] = Field(
        ["console", "jsonl"], description="Where metrics go: console (progress bar), jsonl (RUN/metrics.jsonl, which the "
                                          "report plots), tensorboard (RUN/tensorboard), wandb (see logging.wandb)."
    )
    wandb: WandbSection = Field(WandbSection(), description="Weights & Biases settings, used when backends lists wandb.")
    sample_max_new_tokens: int = Field(64, ge=0, description="Tokens of the sample generation printed after training (0: none).")

    @field_validator("backends")
    @classmethod
    def _each_once(cls, v: list[str]) -> list[str]:
        twice = sorted({name for name in v if v.count(name) > 1})
        if twice:
            raise ValueError(f"lists {', '.join(map(repr, twice))} more than once; list each backend once")
        return v


class Recipe(Section):
    description: str = Field("", description="One line on what this run is for.")
    model: ModelSection
    quantization: QuantizationSection = QuantizationSection()
    lora: LoraSection = LoraSection()
    data: DataSection
    optimizer: OptimizerSection = OptimizerSection()
    scheduler: SchedulerSection = SchedulerSection()
    training: TrainingSection = TrainingSection()
    logging: LoggingSection = LoggingSection()
    output_dir: str = Field(min_length=1, description="The run directory (relative to the current directory).")

    @model_validator(mode="after")
    def _sharding_fits_the_base(self) -> "Recipe":
        # a rule across sections names its key first; the report files it there
        strategy, q = self.training.distributed, self.quantization
        if strategy == "fsdp" and q.bits == 8:
            raise ValueError("training.distributed: fsdp cannot shard 8-bit weights; use bits 4 with a float "
                             "storage_dtype, bits 16, or distributed: ddp")
        if strategy == "fsdp" and q.bits == 4 and q.storage_dtype == "uint8":
            raise ValueError("quantization.storage_dtype: fsdp shards only floating-point tensors, so 4-bit "
                             "weights must be stored in one; set storage_dtype to the compute dtype (e.g. bfloat16)")
        init = self.lora.init_lora_weights
        if strategy == "fsdp" and mutates_base(init):
            # peft converts such an adapter at save time from the whole model in one process (it loads the
            # starting adapter beside the trained one): a sharded model's save failed after training (KeyError)
            raise ValueError(f"lora.init_lora_weights: {init!r} changes the base, so its adapter is converted to plain "
                             f"LoRA when saved, which peft does only on a whole model, not on one sharded by "
                             f"training.distributed: fsdp; use distributed: ddp, or an init that leaves the base as it "
                             f"is (true, gaussian, eva)")
        return self

    @model_validator(mode="after")
    def _lora_fits_the_base(self) -> "Recipe":
        # a rule across sections names its key first ("lora.use_dora: ..."); the report files it there
        found = incompatibilities(self.lora, self.quantization)
        if found:
            raise ValueError("\n".join(f"{key}: {message}" for key, message in found))
        return self
