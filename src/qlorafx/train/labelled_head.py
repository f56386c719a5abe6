"""The output head and the loss only at the positions that carry loss.

Instruction data trains on a fraction of its tokens, yet a causal LM's forward projects every
position onto the whole vocabulary, keeps those logits for backward, and lets the loss ignore most
of them. Here a forward pre-hook on the model's output embeddings (the head transformers names
through ``get_output_embeddings``) hands the head only the hidden states of the positions whose
target is a label, and the model's OWN loss is given exactly those targets:

- causal LMs: ``shift_labels`` (the targets after the shift, one per kept position), which
  transformers' ``ForCausalLMLoss`` uses in place of shifting ``labels`` itself;
- encoder-decoders: the decoder inputs built from the full labels by the model's own
  ``prepare_decoder_input_ids_from_labels``, and ``labels`` reduced to the kept targets.

The loss sums (or averages) over the same targets with the same normalisation
(``num_items_in_batch`` is counted by the Trainer from the batch before this runs), so the loss,
its gradients and what is logged equal the full computation's to float rounding. No model's
forward is copied: the head is a per-position map, so applying it to a subset of rows gives those
rows' logits unchanged.

Where that would not be exact, the full path runs (``full_path_reason`` says why): a head with
active dropout (LoRA on the head with lora_dropout > 0) would draw different random numbers, and a
causal LM whose loss is not transformers' ``ForCausalLMLoss`` may not read ``shift_labels``.
"""

from __future__ import annotations

from contextlib import contextmanager

from qlorafx.model.architecture import is_encoder_decoder

IGNORE_INDEX = -100


def _base(model):
    """The transformers model under peft (and under DDP, unwrapped by the caller)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def full_path_reason(model) -> str | None:
    """Why the head must see every position for this model now, or None when the shortcut is exact."""
    import torch
    from transformers.loss.loss_utils import ForCausalLMLoss

    base = _base(model)
    head = base.get_output_embeddings()
    if head is None:
        return "the model has no output embeddings to hook"
    if any(m.training and isinstance(m, torch.nn.Dropout) and m.p > 0 for m in head.modules()):
        # dropout on N rows instead of all would draw other random numbers: same distribution, other values
        return "the output head applies dropout while training (LoRA on the head with lora_dropout > 0)"
    if is_encoder_decoder(base.config):
        if not hasattr(base, "prepare_decoder_input_ids_from_labels"):
            return "the encoder-decoder cannot build its decoder inputs from labels"
    elif base.loss_function is not ForCausalLMLoss:
        return f"the model's loss is {getattr(base.loss_function, '__name__', base.loss_function)}, not ForCausalLMLoss"
    return None


@contextmanager
def labelled_positions_only(model, inputs: dict):
    """Yields the inputs to call ``model`` with so that its head and loss see labelled positions only.

    ``inputs`` holds ``labels`` (and, for a causal LM, possibly ``shift_labels``). The hook is on
    while the block runs; the model must call its head exactly once, on hidden states of the
    labels' shape, or this raises rather than compute something else.
    """
    base = _base(model)
    labels = inputs["labels"]
    inputs = dict(inputs)
    if is_encoder_decoder(base.config):
        targets = labels  # the decoder's position t predicts labels[t]
        if inputs.get("decoder_input_ids") is None and inputs.get("decoder_inputs_embeds") is None:
            inputs["decoder_input_ids"] = base.prepare_decoder_input_ids_from_labels(labels=labels)
        keep = targets != IGNORE_INDEX
        inputs["labels"] = targets[keep]
    else:
        targets = inputs.get("shift_labels")
        if targets is None:  # position t predicts labels[t + 1]; the last position predicts nothing
            import torch

            targets = torch.nn.functional.pad(labels[..., 1:], (0, 1), value=IGNORE_INDEX)
        keep = targets != IGNORE_INDEX
        inputs["shift_labels"] = targets[keep]

    calls = []

    def gather(_module, args):
        hidden = args[0]
        if hidden.shape[:-1] != keep.shape:
            raise RuntimeError(f"{type(base).__name__}'s output head got hidden states of shape {tuple(hidden.shape)}, "
                               f"expected {tuple(keep.shape)} + (hidden,): cannot keep the labelled positions only")
        calls.append(hidden.shape)
        return (hidden[keep.to(hidden.device)], *args[1:])

    handle = base.get_output_embeddings().register_forward_pre_hook(gather)
    try:
        yield inputs
    finally:
        handle.remove()
    if len(calls) != 1:
        raise RuntimeError(f"{type(base).__name__} called its output head {len(calls)} times in one forward; "
                           "the labelled-positions-only loss assumes exactly once")
