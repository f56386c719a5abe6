"""The output head's product fused with the cross-entropy (train/fused_cross_entropy.py), against the plain
computation it replaces (transformers' ForCausalLMLoss: the head's logits upcast to float32, cross_entropy
summed, divided by the token count): the loss and the hidden states' gradient, chunked or not, in float32
and under bfloat16 autocast, and the logits never held whole."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from qlorafx.train.fused_cross_entropy import cross_entropy, rows_per_chunk

VOCAB, HIDDEN = 100, 4


def _inputs(rows: int):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(rows, HIDDEN, generator=generator).requires_grad_()
    weight = torch.randn(VOCAB, HIDDEN, generator=generator)
    targets = torch.randint(0, VOCAB, (rows,), generator=generator)
    return hidden, weight, targets


def _plain(hidden, weight, targets, divisor):
    """The head's product, then transformers' own loss (not a copy of it), given the targets after the shift."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    logits = torch.nn.functional.linear(hidden, weight)
    return ForCausalLMLoss(logits, None, weight.shape[0], num_items_in_batch=divisor, shift_labels=targets)


def _loss_and_grad(loss_fn, hidden, *args, upstream=1.0):
    hidden.grad = None
    loss = loss_fn(hidden, *args)
    (loss * upstream).backward()
    return loss.detach(), hidden.grad.clone()


@pytest.mark.parametrize("rows", [1, 7, 40, None], ids=["1-row-chunks", "7-with-a-remainder", "one-chunk", "default"])
@pytest.mark.parametrize("divisor", [1, 23, torch.tensor(23)], ids=["sum", "int", "tensor"])
def test_loss_and_gradient_equal_the_plain_head_and_cross_entropy(rows, divisor):
    hidden, weight, targets = _inputs(40)
    plain, plain_grad = _loss_and_grad(_plain, hidden, weight, targets, divisor, upstream=0.5)
    fused, fused_grad = _loss_and_grad(
        lambda h, *a: cross_entropy(h, *a, dtype=torch.float32, rows=rows), hidden, weight, targets, divisor, upstream=0.5)
    assert fused.dtype == torch.float32 and fused.shape == ()
    assert fused.item() == pytest.approx(plain.item(), rel=1e-6)
    assert torch.allclose(fused_grad, plain_grad, rtol=1e-5, atol=1e-6), (fused_grad - plain_grad).abs().max()


def test_under_bfloat16_autocast_both_products_run_in_bfloat16():
    """As the plain head under autocast: the products in bfloat16, the log-softmax in float32, the gradient in
    the hidden states' dtype; equal to it to float32 rounding, and far from the float32 products."""
    hidden, weight, targets = _inputs(40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain, plain_grad = _loss_and_grad(_plain, hidden, weight, targets, 23)
        fused, fused_grad = _loss_and_grad(
            lambda h, *a: cross_entropy(h, *a, dtype=torch.bfloat16, rows=7), hidden, weight, targets, 23)
    assert fused_grad.dtype == torch.float32
    assert fused.item() == pytest.approx(plain.item(), rel=1e-6)
    assert torch.allclose(fused_grad, plain_grad, rtol=1e-5, atol=1e-6)
    float32, float32_grad = _loss_and_grad(_plain, hidden, weight, targets, 23)
    assert float32.item() != pytest.approx(plain.item(), rel=1e-4)
    assert not torch.allclose(float32_grad, plain_grad, rtol=1e-3, atol=1e-6)


class _LargestTensor(TorchDispatchMode):
    """The most elements any operator's output held."""

    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


def test_the_logits_are_never_held_whole():
    hidden, weight, targets = _inputs(40)
    with _LargestTensor() as plain:
        _loss_and_grad(_plain, hidden, weight, targets, 1)
    with _LargestTensor() as fused:
        _loss_and_grad(lambda h, *a: cross_entropy(h, *a, dtype=torch.float32, rows=8), hidden, weight, targets, 1)
    assert plain.largest == 40 * VOCAB  # the detector sees the plain head's logits
    assert fused.largest == 8 * VOCAB  # one chunk's


def test_without_gradients_and_without_rows():
    hidden, weight, targets = _inputs(40)
    with torch.no_grad():
        loss = cross_entropy(hidden, weight, targets, 23, torch.float32)
        assert loss.item() == pytest.approx(_plain(hidden, weight, targets, 23).item(), rel=1e-6)
    assert loss.grad_fn is None
    empty = hidden[:0].detach().requires_grad_()
    loss = cross_entropy(empty, weight, targets[:0], torch.tensor(1), torch.float32)
    loss.backward()
    assert loss.item() == 0.0 and empty.grad.shape == (0, HIDDEN)
    with pytest.raises(ValueError, match="expected"):
        cross_entropy(hidden, weight, targets[:3], 1, torch.float32)


def test_a_chunk_holds_about_64_mb_of_float32_logits():
    assert rows_per_chunk(32000) == 524  # Llama 2
    assert rows_per_chunk(128256) == 256  # Llama 3: the minimum
    assert rows_per_chunk(1000) * 1000 * 4 <= 64 * 2**20


def test_a_second_derivative_is_refused_rather_than_wrong():
    """The backward only scales a gradient formed in the forward, a constant to autograd: differentiated
    again (create_graph, a gradient penalty), the cross-entropy's own second derivative would be missing
    from the result without a word. Refused instead, as torch refuses any once-differentiable function."""
    hidden, weight, targets = _inputs(40)
    plain = _plain(hidden, weight, targets, 23)
    (plain_grad,) = torch.autograd.grad(plain ** 2, hidden, create_graph=True)
    (plain_second,) = torch.autograd.grad(plain_grad.pow(2).sum(), hidden)
    assert plain_second.abs().sum() > 0  # the plain head has one
    fused = cross_entropy(hidden, weight, targets, 23, torch.float32, rows=7)
    (fused_grad,) = torch.autograd.grad(fused ** 2, hidden, create_graph=True)
    assert torch.allclose(fused_grad, plain_grad, rtol=1e-5, atol=1e-6)  # the first derivative is right
    hidden.grad = None
    with pytest.raises(RuntimeError, match="once_differentiable"):
        fused_grad.pow(2).sum().backward()  # the penalty's backward, as a trainer would run it


def test_nan_in_the_hidden_states_gives_a_nan_loss_and_bad_targets_raise_as_in_the_plain_head():
    """The loss guard (train/lifecycle.py) must see a NaN where the plain head gives one, and a target
    outside the vocabulary must be an error on both paths, never a loss of something else."""
    hidden, weight, targets = _inputs(40)
    poisoned = hidden.detach().clone()
    poisoned[5, 1] = float("nan")
    assert _plain(poisoned, weight, targets, 23).isnan()
    assert cross_entropy(poisoned, weight, targets, 23, torch.float32, rows=7).isnan()
    for bad in (VOCAB, -1):
        wrong = targets.clone()
        wrong[9] = bad
        with pytest.raises((IndexError, RuntimeError)):
            _plain(hidden, weight, wrong, 23)
        with pytest.raises((IndexError, RuntimeError)):
            cross_entropy(hidden, weight, wrong, 23, torch.float32, rows=7)
