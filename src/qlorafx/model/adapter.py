"""LoRA via peft: check the recipe's LoRA options against the model's skeleton (before any weight
loads), wrap the loaded model, initialise from data where the init needs it, save the adapter."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from qlorafx.errors import UserError, shown
from qlorafx.model import adapter_files
from qlorafx.model.loaders import PRETRAINED
from qlorafx.model.lora_support import mutates_base
from qlorafx.run_files import ADAPTER_DIR, INITIAL_ADAPTER

# Non-reentrant checkpointing: the variant torch recommends, and the one that works when the
# frozen base's inputs do not require grad.
CHECKPOINTING = {"use_reentrant": False}


class LoraOptionError(UserError):
    """A LoRA option (``key``) does not fit this model; ``detail`` says how."""

    def __init__(self, key: str, detail: str):
        self.key, self.detail = key, detail
        super().__init__(f"{key} {detail}")


class TargetError(LoraOptionError):
    """lora.target_modules matches no layer; the message lists the linear layers there are."""

    def __init__(self, detail: str):
        super().__init__("lora.target_modules", detail)


def linear_layer_names(model) -> list[str]:
    """Full names of the linear layers LoRA can target, without the output head: nn.Linear, and
    transformers' Conv1D (GPT-2's projections, a linear layer with its weight transposed), which
    peft adapts and bitsandbytes quantizes as it does nn.Linear."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not head
    ]


def layer_shape(module) -> tuple[int, int]:
    """(in_features, out_features) of a linear layer; a Conv1D keeps its weight as (in, out)."""
    if hasattr(module, "in_features"):
        return module.in_features, module.out_features
    return tuple(module.weight.shape)


def matched_layers(names: list[str], targets) -> list[str]:
    """The layers peft will wrap: 'all-linear' is all of them, a list matches by name suffix,
    a string is a regex that must match the whole name (peft's rules)."""
    if targets == "all-linear":
        return names
    if isinstance(targets, str):
        return [n for n in names if re.fullmatch(targets, n)]
    return [n for n in names if any(n == t or n.endswith("." + t) for t in targets)]


def layer_index(name: str) -> int | None:
    """The decoder layer a module sits in: the first numbered segment of its name (peft's rule)."""
    match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", name)
    return int(match.group("idx")) if match else None


def lora_layers(names: list[str], lora) -> list[str]:
    """The layers that get LoRA: the targets, only in layers_to_transform, never in modules_to_save."""
    found = matched_layers(names, lora.target_modules)
    if lora.layers_to_transform is not None:
        found = [n for n in found if layer_index(n) in lora.layers_to_transform]
    return [n for n in found if not any(n == m or n.endswith("." + m) for m in lora.modules_to_save)]


def check_target_names(names: list[str], targets) -> None:
    """``names``: the model's linear layers (from its skeleton, or from its config: model/layer_plan.py)."""
    if not names:
        raise TargetError(f"{shown(targets)}: this model has no layer LoRA can wrap (peft adapts nn.Linear and "
                          "transformers' Conv1D layers, and this model has neither outside its output head)")
    if not matched_layers(names, targets):
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
        named = [leaf for leaf in leaves if isinstance(targets, str) and _fullmatch(targets, leaf)]
        if named:  # 'q_proj' as text is a pattern for the whole name, which no layer has: it read as a contradiction
            raise TargetError(f"{shown(targets)} is a text, so peft reads it as a regular expression that must match a "
                              f"layer's whole name (e.g. {names[0]}), and none is named just that; for the layers "
                              f"named {', '.join(named)} write a list: [{', '.join(named)}] (or use 'all-linear')")
        raise TargetError(f"{shown(targets)} matches no linear layer of this model; its linear layers are named "
                          f"{', '.join(leaves)} (or use 'all-linear')")


def _fullmatch(pattern: str, name: str) -> bool:
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def check_targets(model, targets) -> None:
    check_target_names(linear_layer_names(model), targets)


def check_lora_names(names: list[str], lora) -> None:
    """What the linear layers' names alone decide: targets that match, layers that exist, something to wrap."""
    check_target_names(names, lora.target_modules)
    if lora.layers_to_transform is not None:
        present = sorted({i for n in matched_layers(names, lora.target_modules) if (i := layer_index(n)) is not None})
        absent = [i for i in lora.layers_to_transform if i not in present]
        if absent:
            where = f"layers {present[0]} to {present[-1]}" if present else "no numbered layers"
            raise LoraOptionError("lora.layers_to_transform", f"{shown(absent)} names layers this model does not have: "
                                                              f"its targeted layers are {where}")
    if not lora_layers(names, lora):
        raise LoraOptionError("lora", "no layer is left to wrap once layers_to_transform and modules_to_save are "
                                      "applied; widen target_modules or layers_to_transform")


def check_lora(model, recipe) -> None:
    """Every LoRA option against the model's skeleton (meta device): what the recipe alone cannot show."""
    lora = recipe.lora
    names = linear_layer_names(model)
    check_target_names(names, lora.target_modules)
    _check_modules_to_save(model, names, recipe)
    check_lora_names(names, lora)
    if lora.init_from:
        _check_init_from(model, names, recipe)


def _check_modules_to_save(model, linear_names: list[str], recipe) -> None:
    bits = recipe.quantization.bits
    quantized = set(linear_names) if bits in (4, 8) else set()  # transformers quantizes every linear but the head
    modules = [name for name, _ in model.named_modules() if name]
    for wanted in recipe.lora.modules_to_save:
        hits = [n for n in modules if n == wanted or n.endswith("." + wanted)]
        if not hits:
            own = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                          if n and n not in quantized and next(m.parameters(recurse=False), None) is not None})
            raise LoraOptionError("lora.modules_to_save", f"{shown(wanted)} names no module of this model; modules that can "
                                  f"train in full are named {', '.join(own)}")
        frozen = [n for n in hits if n in quantized]
        if frozen:
            raise LoraOptionError(
                "lora.modules_to_save", f"{shown(wanted)} names {len(frozen)} layers stored in {bits} bits (e.g. {frozen[0]}); "
                f"quantized weights cannot train in full. Give them LoRA through target_modules instead, "
                f"or set quantization.bits: 16")


def _check_init_from(model, linear_names: list[str], recipe) -> None:
    lora, folder = recipe.lora, Path(recipe.lora.init_from)
    config = adapter_files.read_config(folder, "lora.init_from")
    theirs = {"r": config.get("r"), "alpha": config.get("lora_alpha"), "use_dora": bool(config.get("use_dora")),
              "use_rslora": bool(config.get("use_rslora")), "bias": config.get("bias", "none"),
              "modules_to_save": sorted(config.get("modules_to_save") or []),
              "layers_to_transform": _as_list(config.get("layers_to_transform"))}
    ours = {"r": lora.r, "alpha": lora.alpha, "use_dora": lora.use_dora, "use_rslora": lora.use_rslora,
            "bias": lora.bias, "modules_to_save": sorted(lora.modules_to_save),
            "layers_to_transform": lora.layers_to_transform}
    differ = [f"lora.{k} is {shown(ours[k])} but the adapter has {shown(theirs[k])}" for k in ours if ours[k] != theirs[k]]
    if differ:
        raise LoraOptionError("lora.init_from", f"{folder}: the adapter does not have this recipe's LoRA shape: "
                              f"{'; '.join(differ)}. Set these to the adapter's values (the recipe must describe "
                              f"the adapter it trains)")
    adapter_config = _AdapterLora(config)
    want, have = set(lora_layers(linear_names, lora)), set(lora_layers(linear_names, adapter_config))
    if want != have:
        extra, missing = sorted(have - want), sorted(want - have)
        raise LoraOptionError("lora.init_from", f"{folder}: the adapter wraps {len(have)} layers, lora.target_modules picks "
                              f"{len(want)}" + (f"; only the adapter has {extra[0]}" if extra else "")
                              + (f"; only the recipe has {missing[0]}" if missing else "")
                              + f". Set lora.target_modules to {shown(config.get('target_modules'))}")
    if recipe.model.loader == PRETRAINED and not adapter_files.same_base(config.get("base_model_name_or_path"), recipe.model.path):
        raise LoraOptionError("lora.init_from", f"{folder}: the adapter was trained on {config['base_model_name_or_path']}, "
                              f"but model.path is {recipe.model.path}; set model.path to the base it needs")
    shapes = {n: layer_shape(m) for n, m in model.named_modules() if n in set(linear_names)}
    wrong = adapter_files.shape_mismatches(folder, shapes)
    if wrong:
        raise LoraOptionError("lora.init_from", f"{folder}: the adapter does not fit this model's layers, so it was trained "
                              f"on another base: {', '.join(wrong[:3])}")


class _AdapterLora:
    """An adapter_config.json seen through the recipe's names, to match layers the same way."""

    def __init__(self, config: dict):
        targets = config.get("target_modules")
        self.target_modules = sorted(targets) if isinstance(targets, (list, set)) else targets
        self.layers_to_transform = _as_list(config.get("layers_to_transform"))
        self.modules_to_save = config.get("modules_to_save") or []


def _as_list(value):
    return [value] if isinstance(value, int) else value


def lora_config(recipe, linear_names: list[str], task_type: str = "CAUSAL_LM"):
    """``task_type``: peft's CAUSAL_LM or SEQ_2_SEQ_LM (qlorafx.model.architecture.peft_task_type)."""
    from peft import EvaConfig, LoraConfig

    lora = recipe.lora
    targets = lora.target_modules
    if lora.layers_to_transform is not None and targets == "all-linear":
        # peft filters by layer only for named targets: name the linear layers' kinds (never the head)
        targets = sorted({n.rsplit(".", 1)[-1] for n in linear_names})
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        bias=lora.bias,
        modules_to_save=list(lora.modules_to_save) or None,
        layers_to_transform=lora.layers_to_transform,
        use_dora=lora.use_dora,
        use_rslora=lora.use_rslora,
        init_lora_weights=lora.init_lora_weights,
        eva_config=EvaConfig() if lora.init_lora_weights == "eva" else None,
        task_type=task_type,
    )


def add_lora(model, recipe, run_dir: Path | None = None):
    """Wrap the loaded model in LoRA adapters (options checked beforehand, on its skeleton), or load
    lora.init_from trainable. With a base-mutating init, the starting adapter goes to run_dir."""
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    from qlorafx.model.architecture import peft_task_type

    lora = recipe.lora
    if recipe.quantization.bits in (4, 8):
        # Casts the few unquantized weights (norms, embeddings) to fp32 for stable training and,
        # with gradient checkpointing, makes the frozen embeddings' output require grad.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=recipe.training.gradient_checkpointing,
            gradient_checkpointing_kwargs=CHECKPOINTING,
        )
    elif recipe.training.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=CHECKPOINTING)
        model.enable_input_require_grads()
    if lora.init_from:
        return _trained_in(PeftModel.from_pretrained(model, lora.init_from, is_trainable=True), lora.dtype)
    peft_model = get_peft_model(model, lora_config(recipe, linear_layer_names(model), peft_task_type(model.config)))
    if mutates_base(lora.init_lora_weights) and run_dir is not None:
        # saved with init 'true' so that loading it for the conversion does not decompose again
        config = peft_model.peft_config["default"]
        config.init_lora_weights = True
        peft_model.save_pretrained(run_dir / INITIAL_ADAPTER)
        config.init_lora_weights = lora.init_lora_weights
    return _trained_in(peft_model, lora.dtype)


def _trained_in(model, dtype: str):
    """The trainable tensors in lora.dtype: peft makes them fp32; qlora.py casts them to bf16 under
    --bf16, which halves the adapter's weights and gradients (peft casts a LoRA layer's input to its dtype)."""
    import torch

    if dtype != "float32":
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.to(getattr(torch, dtype))
    return model


class _ModelInputs:
    """Training batches as plain model inputs (the trainer's token count taken out), re-iterable."""

    def __init__(self, dataloader):
        self.dataloader = dataloader

    def __iter__(self):
        from qlorafx.data.collate import NUM_TOKENS, ROW_TOKENS

        for batch in self.dataloader:
            yield {k: v for k, v in batch.items() if k not in (NUM_TOKENS, ROW_TOKENS)}

    def __len__(self):
        return len(self.dataloader)


def initialize_from_data(model, recipe, batches) -> None:
    """EVA: A from an SVD of each wrapped layer's inputs on training batches (before the optimizer
    exists: EVA may change each layer's rank). ``batches``: an iterable, or a function returning one
    (called only when the init needs data)."""
    if recipe.lora.init_lora_weights != "eva":
        return
    dataloader = batches() if callable(batches) else batches
    from peft import initialize_lora_eva_weights

    from qlorafx.data.collate import IGNORE_INDEX

    initialize_lora_eva_weights(
        model, _ModelInputs(dataloader), show_progress_bar=False,
        # tokens that carry loss; the default reads attention_mask, which is 4D for packed rows
        prepare_model_inputs_fn=lambda inputs, config: (inputs["labels"] != IGNORE_INDEX).nonzero(),
    )


def save_adapter(model, recipe, run_dir: Path, state_dict: dict | None = None) -> None:
    """The adapter in PEFT format, always applicable to the original base: a pissa/olora adapter is
    converted to plain LoRA of rank 2r (peft's conversion) and its starting copy removed.
    ``state_dict``: the adapter's tensors whole, when the model holds only its shard of them (FSDP)."""
    initial = run_dir / INITIAL_ADAPTER
    if mutates_base(recipe.lora.init_lora_weights) and initial.is_dir():
        model.save_pretrained(run_dir / ADAPTER_DIR, path_initial_model_for_weight_conversion=str(initial),
                              state_dict=state_dict)
        shutil.rmtree(initial)
    else:
        model.save_pretrained(run_dir / ADAPTER_DIR, state_dict=state_dict)
