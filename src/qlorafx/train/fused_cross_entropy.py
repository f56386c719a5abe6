"""The output head's product fused with the cross-entropy, a chunk of rows at a time (used by
train/labelled_head.py).

For the hidden states ``h`` of the positions that carry loss (N x hidden), the head's weight ``W``
(vocabulary x hidden), one target per row and a divisor: the cross-entropy of ``h @ W.T`` summed over
the rows and divided, as transformers' ForCausalLMLoss computes it (the logits upcast to float32,
cross_entropy summed, divided by the token count), and its gradient w.r.t. ``h``, without ever holding
the N x vocabulary logits. Per chunk of rows the forward computes the chunk's logits, their log-softmax
and loss (cross_entropy's own two steps) and, in the same pass, the loss's gradient w.r.t. the chunk's
logits (softmax - one-hot, over the divisor: the softmax taken as exp of the log-softmax, as
log_softmax's backward takes it) and through the head (that times ``W``); the chunk's logits are then
dropped. Backward only scales the saved N x hidden gradient by the loss's own gradient (1 when the loss
is what is differentiated, as the Trainer's is with a token count).

The plain head keeps N x vocabulary logits in the compute dtype and their float32 log-softmax for
backward, and forms the same again as the logits' gradient: on a GPU with a 128k vocabulary the largest
tensors of a step. Here a chunk's float32 logits (``rows_per_chunk``) are the largest, two at a time at most.

Mixed precision: ``dtype`` is the dtype the head's own product gives in this context (under autocast,
autocast's dtype), and both products run in it, as the plain head's forward and backward do; the
logits' gradient is divided before it is rounded to that dtype, as on the plain path, so that bfloat16
rounds the same numbers. Autocast is switched off inside so that no operator is cast twice (autocast
applies inside a custom Function's forward like anywhere else; the backward, which only scales, runs
outside it either way).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

# a chunk's float32 logits hold about this many elements (64 MB); at least MIN_ROWS rows per chunk so
# that a small vocabulary's products stay large enough to run at full speed
CHUNK_ELEMENTS = 2**24
MIN_ROWS = 256


def rows_per_chunk(vocab_size: int) -> int:
    return max(MIN_ROWS, CHUNK_ELEMENTS // max(vocab_size, 1))


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, divisor, dtype, rows):
        want_grad = ctx.needs_input_grad[0]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        # d(loss)/d(sum), formed as the division's own backward forms it (1 / divisor)
        scale = torch.ones((), dtype=torch.float32, device=hidden.device) / divisor
        grad = torch.empty_like(hidden) if want_grad else None
        with torch.autocast(hidden.device.type, enabled=False):
            weight = weight.to(dtype)  # once, not per chunk (autocast re-casts a weight at every call)
            for start in range(0, hidden.shape[0], rows):
                chunk = hidden[start:start + rows].to(dtype)
                target = targets[start:start + rows, None]
                # cross_entropy's own steps: log_softmax, then the negative log-likelihood of the targets
                values = torch.log_softmax(torch.nn.functional.linear(chunk, weight).float(), dim=-1)
                total -= values.gather(1, target).sum()
                if want_grad:  # (softmax - one-hot) x scale, in place of the log-probabilities
                    values.exp_().mul_(scale).scatter_add_(1, target, (-scale).expand(target.shape))
                    grad[start:start + rows] = torch.mm(values.to(dtype), weight)
                del values  # before the next chunk's logits: two chunks' worth at a time, not three
        ctx.save_for_backward(grad)
        return total / divisor

    # the saved gradient is a constant to autograd: a second derivative through it (create_graph) would lack the
    # cross-entropy's own without a word, so torch is told to refuse one
    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        # a 0-dim factor: the product keeps the hidden states' dtype
        return grad * grad_loss.to(grad.device), None, None, None, None, None


def cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, divisor, dtype: torch.dtype,
                  rows: int | None = None) -> torch.Tensor:
    """cross_entropy(linear(hidden, weight).float(), targets, reduction="sum") / divisor, differentiable w.r.t.
    ``hidden`` only (the head's weight must not train: its gradient is not formed). ``divisor``: a number or a
    0-dim tensor (the token count); ``dtype``: the products' (the head's output dtype)."""
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(f"expected (rows, hidden) and (rows,), got {tuple(hidden.shape)} and {tuple(targets.shape)}")
    if torch.is_tensor(divisor):
        divisor = divisor.to(hidden.device)
    if not torch.is_grad_enabled():
        hidden = hidden.detach()  # no gradient wanted: the forward skips forming it
    return _FusedLinearCrossEntropy.apply(hidden, weight, targets.to(hidden.device), divisor, dtype,
                                          rows or rows_per_chunk(weight.shape[0]))
