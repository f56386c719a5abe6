"""qlorafx estimate RECIPE [overrides] [--device cuda|cpu]: peak training memory from the model's config, no weights loaded."""

from qlorafx.cli.common import add_recipe_arguments, load


def add_parser(commands) -> None:
    parser = commands.add_parser("estimate", help="peak training memory of a recipe, from the model's config alone")
    add_recipe_arguments(parser)
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None,
                        help="the machine the run will train on (default: this one): compute_dtype auto is "
                             "bfloat16 on cuda, float32 on cpu, and paged optimizers page only on cuda")
    parser.set_defaults(run=run)


def size(n: int) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def run(args) -> int:
    loaded = load(args)  # recipe problems are reported before torch is imported
    from qlorafx.train.quiet import quiet_libraries

    quiet_libraries()
    import torch

    from qlorafx.estimate import estimate, target_compute_dtype
    from qlorafx.estimate.configs import model_config
    from qlorafx.estimate.shape import model_shape
    from qlorafx.errors import UserError
    from qlorafx.model.adapter import check_lora
    from qlorafx.model.architecture import is_encoder_decoder
    from qlorafx.model.config_check import ModelConfigError, recipe_fits_config
    from qlorafx.model.loaders import skeleton

    recipe = loaded.recipe
    config, source = model_config(recipe)
    refused = recipe_fits_config(recipe, config)  # max_length past the position embeddings: no estimate of that
    if refused:
        raise ModelConfigError(refused)
    if is_encoder_decoder(config):
        raise UserError(f"model {config.model_type} is an encoder-decoder (T5 family); qlorafx estimate models "
                        "decoder-only (causal) LMs' activations only, so it would understate this one; measure a "
                        "few steps with training.max_steps instead")
    check_lora(skeleton(config), recipe)
    shape = model_shape(recipe, config)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    compute = target_compute_dtype(recipe.quantization.compute_dtype, device)
    e = estimate(recipe, shape, compute, device)

    q, t = recipe.quantization, recipe.training
    kind = f"{q.bits}-bit {q.quant_type}{' double-quant' if q.double_quant else ''}" if q.bits == 4 else f"{q.bits}-bit"
    on, off = e.moment(True), e.moment(False)
    paged = "; paged: can move to CPU memory" if e.paged else ""
    rows = [
        (f"quantized weights ({len(shape.quantized)} layers, with quantization constants)", e.quantized_weights),
        ("other weights (embeddings, norms, head, biases)", e.other_weights),
        (f"trainable parameters ({sum(shape.trainable):,}, {recipe.lora.dtype}; LoRA {shape.lora_params:,})", e.lora_params),
        ("their gradients", e.gradients),
        (f"optimizer states ({recipe.optimizer.name}{paged})", e.optimizer_states),
        (f"activations (gradient checkpointing {'on' if e.checkpointing else 'off'})", e.moment().activations),
        ("workspace (logits gradient, a dequantized weight)", e.moment().workspace),
    ]
    print(f"{args.recipe}: {config.model_type}, {shape.layers} layers, hidden {shape.hidden} (from {source})")
    print(f"on {device}: {kind} base, compute {compute}; micro_batch_size {t.micro_batch_size} x max_length "
          f"{recipe.data.max_length} tokens")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {size(value):>11}")
    print(f"  {'peak':<{width}}  {size(e.peak()):>11}")
    if e.paged:
        print(f"  {'peak with the paged optimizer states in CPU memory':<{width}}  {size(e.floor()):>11}")
    print(f"gradient checkpointing: off {size(e.peak(False))} (activations {size(off.activations)}), "
          f"on {size(e.peak(True))} (activations {size(on.activations)})")
    extra = "a GPU's CUDA context (about 0.5 GiB) and allocator fragmentation" if device == "cuda" else "allocator fragmentation"
    print(f"not included: {extra}; see docs/estimate.md")
    return 0
