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

Fused (``fused=True``, where ``fused_path_reason`` is None: a causal LM training with a plain
``torch.nn.Linear`` head, frozen, without bias, whose config post-processes no logits, not sharded,
not in float16): the labelled rows' logits are not formed at all. The pre-hook takes the kept rows
and hands the head an empty selection (0 rows: its product costs nothing); a forward hook keeps the
head's empty output as a placeholder; the model's loss function is replaced for the block by one
that checks it was handed that placeholder (anything else means the forward changed the logits after
the head: a RuntimeError naming the model, never another loss) and computes the loss with the head's
weight from the kept rows, chunk by chunk (train/fused_cross_entropy.py), divided as
ForCausalLMLoss divides it. The gradient w.r.t. the hidden states is formed in that forward; the N x
vocabulary logits, their log-softmax and their gradient are never held. Evaluation keeps the unfused
path: its per-row loss sums read the logits.
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


# config fields that make a causal LM's forward change its logits between the head and the loss (found in
# transformers 5.24's ForCausalLM forwards): the fused loss never forms the logits, so these keep the unfused
# path. A model that changes them in a way no field names (chameleon masks image tokens, for one) is caught
# at run time (_FusedLoss), with an error rather than another loss.
LOGIT_POSTPROCESSING = (
    "final_logit_softcapping",  # gemma2, gemma3, gemma3n, gemma4, vaultgemma, nanochat, beam, inkling2, muse_*
    "logit_scale",  # cohere, cohere2, cohere2_moe
    "logits_scaling",  # granite*, hyperclovax
    "lm_head_multiplier",  # falcon_h1
    "output_multiplier",  # muse_spark, muse_glimmer
    "logits_soft_cap",  # recurrent_gemma
    "output_logit_soft_cap",  # xlstm
    "unpadded_vocab_size",  # inkling (cuts the vocabulary)
)


def fused_path_reason(model, *, sharded: bool = False, float16: bool = False) -> str | None:
    """Why the head's product cannot be fused with the loss for this model now, or None when it can (asked
    where ``full_path_reason`` is None). ``sharded``: the Trainer shards the model (training.distributed fsdp);
    ``float16``: float16 mixed precision (the Trainer's fp16, or its accelerator's from ACCELERATE_MIXED_PRECISION)."""
    import torch

    base = _base(model)
    if not base.training:
        return "evaluating: the evaluation's per-row loss sums read the logits"
    if is_encoder_decoder(base.config):
        return "an encoder-decoder: its loss is not ForCausalLMLoss"
    if sharded:
        return "the model is sharded (training.distributed fsdp): the head's weight is gathered inside its own forward"
    head = base.get_output_embeddings()
    if type(head) is not torch.nn.Linear:  # Linear4bit, peft's LoRA layer or modules_to_save wrapper: other products
        return f"the output head is a {type(head).__name__}, not a plain torch.nn.Linear"
    if head.bias is not None:
        return "the output head has a bias"
    if head.weight.requires_grad:
        return "the output head's weight trains (a trained or tied embedding): the fused loss forms no weight gradient"
    if getattr(head, "_hf_hook", None) is not None:
        return "accelerate's hooks place the output head's weight (device_map offloading)"
    if head.out_features != base.config.get_text_config().vocab_size:
        return f"the head has {head.out_features} outputs, the config's vocabulary {base.config.get_text_config().vocab_size}"
    if float16 or head.weight.dtype == torch.float16:
        # the loss scaler scales the logits' gradient before it is rounded to float16; formed in the forward,
        # ahead of the scale, its small probabilities would flush to zero
        return "float16: the loss scaler's scale must reach the logits' gradient before it is rounded"
    for config in {id(c): c for c in (base.config, base.config.get_text_config())}.values():
        for field in LOGIT_POSTPROCESSING:
            if getattr(config, field, None) is not None:
                return f"the config's {field} changes the logits after the head"
    return None


@contextmanager
def labelled_positions_only(model, inputs: dict, fused: bool = False):
    """Yields the inputs to call ``model`` with so that its head and loss see labelled positions only.

    ``inputs`` holds ``labels`` (and, for a causal LM, possibly ``shift_labels``). The hook is on
    while the block runs; the model must call its head exactly once, on hidden states of the
    labels' shape, or this raises rather than compute something else. ``fused`` (a causal LM for
    which ``fused_path_reason`` is None): the head's product and the loss are computed together,
    chunk by chunk, and the model's loss function is replaced for the block by one that returns
    that loss.
    """
    base = _base(model)
    labels = inputs["labels"]
    inputs = dict(inputs)
    if is_encoder_decoder(base.config):
        if fused:
            raise ValueError("the head and the loss are fused for causal LMs only (ForCausalLMLoss)")
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
    fusion = _FusedLoss(base, inputs["shift_labels"]) if fused else None

    def gather(_module, args):
        hidden = args[0]
        if hidden.shape[:-1] != keep.shape:
            raise RuntimeError(f"{type(base).__name__}'s output head got hidden states of shape {tuple(hidden.shape)}, "
                               f"expected {tuple(keep.shape)} + (hidden,): cannot keep the labelled positions only")
        calls.append(hidden.shape)
        kept = hidden[keep.to(hidden.device)]
        return (fusion.take(kept) if fusion else kept, *args[1:])

    head = base.get_output_embeddings()
    handles = [head.register_forward_pre_hook(gather)]
    if fusion:
        # first among the head's forward hooks: one that changed its output after it must show as a change
        handles.append(head.register_forward_hook(fusion.after_head, prepend=True))
        fusion.replace_loss_function()
    try:
        yield inputs
    finally:
        for handle in handles:
            handle.remove()
        if fusion:
            fusion.restore_loss_function()
    if len(calls) != 1:
        raise RuntimeError(f"{type(base).__name__} called its output head {len(calls)} times in one forward; "
                           "the labelled-positions-only loss assumes exactly once")
    if fusion and fusion.loss_calls != 1:
        raise RuntimeError(f"{type(base).__name__} called its loss function {fusion.loss_calls} times in one forward; "
                           "the fused head and loss assume exactly once")


_UNSET = object()


class _FusedLoss:
    """The head's product and the loss, fused (train/fused_cross_entropy.py), through the hooks and the loss
    function a causal LM's forward calls: the pre-hook takes the labelled rows and hands the head none of them
    (a product over 0 rows costs nothing); after the head, its 0-row output is kept as the placeholder the
    model must hand its loss function unchanged; the loss function computes the loss from the taken rows and
    the head's weight, in the dtype the head's product gave (autocast's, under mixed precision), once it
    knows the divisor (the token count), which the logits' gradient is divided by before it is rounded."""

    def __init__(self, base, targets):
        self.base, self.targets = base, targets
        self.rows = self.placeholder = self.weight = None
        self.loss_calls = 0
        self.saved = _UNSET

    def take(self, kept):
        self.rows = kept
        return kept[:0]

    def after_head(self, head, _args, output):
        self.placeholder, self.weight = output, head.weight

    def replace_loss_function(self):
        # the instance attribute transformers' loss_function property reads first (its setter writes it)
        self.saved = self.base.__dict__.get("_loss_function", _UNSET)
        self.base.loss_function = self

    def restore_loss_function(self):
        if self.saved is _UNSET:
            self.base.__dict__.pop("_loss_function", None)
        else:
            self.base._loss_function = self.saved

    def _is_the_heads_output(self, logits) -> bool:
        import torch

        placeholder = self.placeholder
        if placeholder is None or logits is placeholder:  # no head call before the loss; or its output itself
            return placeholder is not None
        # or a float32 upcast of it (mllama, mamba, nemotron_h: `self.lm_head(h).float()`), as ForCausalLMLoss upcasts
        grad_fn = getattr(logits, "grad_fn", None)
        return (logits.dtype == torch.float32 and logits.shape == placeholder.shape and placeholder.grad_fn is not None
                and type(grad_fn).__name__ == "ToCopyBackward0" and grad_fn.next_functions[0][0] is placeholder.grad_fn)

    def __call__(self, logits, labels=None, vocab_size=None, num_items_in_batch=None, ignore_index=IGNORE_INDEX,
                 shift_labels=None, **kwargs):
        """ForCausalLMLoss's signature and normalisation (fixed_cross_entropy): the sum over the targets divided by
        num_items_in_batch when given, else their mean."""
        import torch

        from qlorafx.train.fused_cross_entropy import cross_entropy

        self.loss_calls += 1
        name = type(self.base).__name__
        if not self._is_the_heads_output(logits):
            raise RuntimeError(f"{name} changed its logits between its output head and its loss: the fused head and "
                               "loss cannot compute that loss (set the trainer's fuse_head_with_loss to False)")
        if (ignore_index != IGNORE_INDEX or shift_labels is None or shift_labels.shape != self.targets.shape
                or not (shift_labels is self.targets or torch.equal(shift_labels.to(self.targets.device), self.targets))):
            raise RuntimeError(f"{name} handed its loss function other targets than the labelled positions' own")
        # fixed_cross_entropy's divisor: num_items_in_batch when given, else the number of targets (the mean;
        # over none that is 0/0, as there)
        divisor = num_items_in_batch if num_items_in_batch is not None else self.targets.numel()
        rows, self.rows = self.rows, None
        return cross_entropy(rows, self.weight, self.targets, divisor, self.placeholder.dtype)
