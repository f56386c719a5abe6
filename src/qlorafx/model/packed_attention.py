"""Attention inside each packed example only, under sdpa: no work on the pairs a mask would throw away.

A packed row of 512 tokens holding four examples of ~128 needs attention within each example: with
sdpa that is a (512 x 512) block-diagonal mask over which the kernel still computes every score, 3/4
of them masked out, and the rows' padding goes through every layer too. Under this implementation
the collator hands the micro-batch over as ONE padding-free row with the examples' boundaries
(``cu_seq_lens_q/k``, the keyword arguments transformers threads from the model's forward down to its
attention function for flash attention's variable-length kernel), and each example is attended by
transformers' own ``sdpa_attention_forward`` alone, causally, with no mask. Scores computed: the sum
of the examples' squared lengths instead of the row's squared width.

It is registered with transformers' ``AttentionInterface`` (and ``AttentionMaskInterface``, as sdpa),
and anything that is not a flattened packed batch (evaluation of unpacked data, generation) goes to
``sdpa_attention_forward`` unchanged: the same function, the same mask. ``unsupported_reason`` says
when a model or recipe keeps the block-diagonal mask instead.
"""

from __future__ import annotations

from qlorafx.data.collate import PACKED_SDPA as NAME
from qlorafx.model.config_check import recurrent_layers

# config fields holding the probability of dropout on the attention weights, across families
ATTENTION_DROPOUT = ("attention_dropout", "attn_pdrop", "attention_probs_dropout_prob", "attn_dropout")


def unsupported_reason(model, recipe) -> str | None:
    """Why this run keeps sdpa with the block-diagonal mask, or None when attention per example is exact."""
    config = model.config
    if not recipe.data.packing:
        return "the data is not packed"
    if recipe.model.attn_implementation != "sdpa":
        return f"model.attn_implementation is {recipe.model.attn_implementation}, not sdpa"
    if config.is_encoder_decoder:
        return "an encoder-decoder is not packed"
    # the language model's own config: a composite model (Gemma 3n, Gemma 4's assistant) keeps its window,
    # dropout and layer types in text_config, and has none of them at the top
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    # the model must thread the flash keyword arguments (the boundaries) through to its attention function
    if not (type(model)._supports_attention_backend and type(model)._supports_flash_attn and type(model)._supports_sdpa):
        return f"{type(model).__name__} does not pass variable-length boundaries to its attention function"
    # one sdpa call per example draws other random numbers than one over the row: same distribution, other values
    # (families name the probability differently: GPT-2's attn_pdrop is 0.1 by default, BERT's the last)
    if any(getattr(config, name, None) for name in ATTENTION_DROPOUT):
        return "the model applies dropout to its attention weights"
    # a recurrent or convolutional layer (a linear attention, Mamba, a short convolution) carries its state along
    # the flattened row, from one example into the next and across the micro-batch's rows: only attention is split
    mixers = recurrent_layers(config)  # validate refuses packing them; kept here for callers that skip it
    if mixers:
        return f"the model has {', '.join(map(str, mixers))} layers, which no attention boundary splits"
    window = getattr(config, "sliding_window", None)
    if window is not None and window < recipe.data.max_length:
        return f"the model's sliding window ({window}) is shorter than data.max_length ({recipe.data.max_length})"
    # a flattened micro-batch that reaches the window makes transformers build its sliding mask over the whole row:
    # (b s)^2 values, b times the block-diagonal masks', that attention per example would never read
    flattened = recipe.training.micro_batch_size * recipe.data.max_length
    if window is not None and window <= flattened:
        return (f"the model's sliding window ({window}) is no longer than a flattened micro-batch "
                f"(training.micro_batch_size x data.max_length = {flattened} tokens), over which transformers "
                "would build a mask")
    return None


def attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention-function signature: (batch, heads, tokens, head_dim) in, (batch, tokens, heads,
    head_dim) out. With ``cu_seq_lens_q``: one row of packed examples, attended one by one."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.pop("cu_seq_lens_q", None)
    if bounds is None:
        bounds = _bounds_from_positions(query, key, attention_mask, kwargs.get("position_ids"))
    if bounds is None:
        _refuse_lost_boundaries(query, attention_mask, kwargs.get("position_ids"))
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    key_bounds = kwargs.pop("cu_seq_lens_k", bounds)
    bounds = _as_list(bounds)
    if _as_list(key_bounds) != bounds or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        raise RuntimeError("packed attention: expected one row whose queries and keys share their boundaries")
    lengths = [b - a for a, b in zip(bounds, bounds[1:])]
    window = kwargs.get("sliding_window")
    longest = max(lengths)
    if window is not None and longest > window:
        raise RuntimeError(f"packed attention: an example of {longest} tokens exceeds the sliding window ({window})")
    for name in ("max_length_q", "max_length_k", "position_ids", "sliding_window"):
        kwargs.pop(name, None)
    # split, not sliced: the backward of a split is one concatenation, of N slices N full-size zero tensors
    pieces = [sdpa_attention_forward(module, q, k, v, None, dropout=dropout, scaling=scaling, is_causal=True,
                                     **kwargs)[0]
              for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))]
    return torch.cat(pieces, dim=1), None


def _as_list(bounds) -> list[int]:
    """The boundaries as Python ints, read once per forward: every layer (and a checkpointed layer's
    recomputation) gets the same tensor, and on a GPU each read waits for the device to catch up."""
    cached = getattr(bounds, "_qlorafx_bounds", None)
    if cached is None:
        cached = bounds.tolist()
        bounds._qlorafx_bounds = cached
    return cached


def _bounds_from_positions(query, key, attention_mask, position_ids):
    """The boundaries of a flattened row whose model handed its attention the positions but not the other keyword
    arguments (Nemotron's decoder layer): where the positions restart, read as transformers' flash attention reads
    them (one row, no mask, its own keys). None for anything else (generation, a padded batch, one sequence)."""
    from transformers.modeling_flash_attention_utils import _is_packed_sequence, prepare_fa_kwargs_from_position_ids

    if (attention_mask is not None or position_ids is None or position_ids.dim() != 2
            or query.shape[0] != 1 or query.shape[2] != key.shape[2] or position_ids.shape[-1] != query.shape[2]
            or not _is_packed_sequence(position_ids, 1)):
        return None
    (bounds, _), _ = prepare_fa_kwargs_from_position_ids(position_ids)
    return bounds


def _refuse_lost_boundaries(query, attention_mask, position_ids) -> None:
    """A row whose positions restart holds several examples: attended with no mask and no boundaries, they
    would see each other. That happens only if a model drops the boundaries on the way down and the positions
    cannot give them (``_bounds_from_positions``: not one row attending its own keys): refuse it."""
    if attention_mask is not None or position_ids is None or query.shape[2] < 2:
        return
    if bool((position_ids[..., 1:] <= position_ids[..., :-1]).any()):
        raise RuntimeError("packed attention: a row of packed examples reached attention without its boundaries "
                           "(cu_seq_lens_q); this model cannot attend per example")


def register() -> None:
    """Make NAME an attention implementation transformers knows (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def use_for_packed_rows(model, recipe, log=print) -> str:
    """Switches ``model`` to attention per packed example where that is exact; returns the attention
    implementation the collator batches for."""
    reason = unsupported_reason(model, recipe)
    if reason is not None:
        if recipe.data.packing and recipe.model.attn_implementation == "sdpa":
            log(f"attention: packed rows keep sdpa's block-diagonal mask ({reason})")
        return recipe.model.attn_implementation
    register()
    model.set_attn_implementation(NAME)
    log("attention: sdpa over each packed example alone (one padding-free row per micro-batch)")
    return NAME
