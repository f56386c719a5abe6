"""qlorafx estimate RECIPE [overrides]: peak training memory from the model's config, no weights loaded."""

from qlorafx.cli.common import add_recipe_arguments, load


def add_parser(commands) -> None:
    parser = commands.add_parser("estimate", help="peak training memory of a recipe, from the model's config alone")
    add_recipe_arguments(parser)
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
    from qlorafx.estimate import estimate
    from qlorafx.estimate.shape import model_shape
    from qlorafx.errors import UserError
    from qlorafx.model.adapter import check_lora
    from qlorafx.model.architecture import is_encoder_decoder
    from qlorafx.model.loaders import MODEL_LOADERS, skeleton
    from qlorafx.model.quantize import resolve_compute_dtype

    recipe = loaded.recipe
    loader = MODEL_LOADERS.get(recipe.model.loader)
    config = loader.config(recipe, loader.tokenizer(recipe))
    if is_encoder_decoder(config):
        raise UserError(f"model {config.model_type} is an encoder-decoder (T5 family); qlorafx estimate models "
                        "decoder-only (causal) LMs' activations only, so it would understate this one; measure a "
                        "few steps with training.max_steps instead")
    check_lora(skeleton(config), recipe)
    shape = model_shape(recipe, config)
    compute = resolve_compute_dtype(recipe.quantization.compute_dtype)
    e = estimate(recipe, shape, compute)

    q, t = recipe.quantization, recipe.training
    kind = f"{q.bits}-bit {q.quant_type}{' double-quant' if q.double_quant else ''}" if q.bits == 4 else f"{q.bits}-bit"
    on, off = e.moment(True), e.moment(False)
    rows = [
        (f"quantized weights ({len(shape.quantized)} layers, with quantization constants)", e.quantized_weights),
        ("other weights (embeddings, norms, head, biases)", e.other_weights),
        (f"trainable parameters ({sum(shape.trainable):,}; LoRA {shape.lora_params:,})", e.lora_params),
        ("their gradients", e.gradients),
        (f"optimizer states ({recipe.optimizer.name})", e.optimizer_states),
        (f"activations (gradient checkpointing {'on' if e.checkpointing else 'off'})", e.moment().activations),
        ("workspace (logits gradient, a dequantized weight)", e.moment().workspace),
    ]
    print(f"{args.recipe}: {config.model_type}, {shape.layers} layers, hidden {shape.hidden}; {kind} base, compute "
          f"{compute}; micro_batch_size {t.micro_batch_size} x max_length {recipe.data.max_length} tokens")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {size(value):>11}")
    print(f"  {'peak':<{width}}  {size(e.peak()):>11}")
    print(f"gradient checkpointing: off {size(e.peak(False))} (activations {size(off.activations)}), "
          f"on {size(e.peak(True))} (activations {size(on.activations)})")
    print("not included: a GPU's CUDA context (about 0.5 GiB) and allocator fragmentation; see docs/estimate.md")
    return 0
