"""Batch collators, by registry key: tokenized examples (or packed rows) -> tensors.

Entries are factories taking the pad token id and the attention implementation; torch is
imported when a batch is built. Padding never carries loss.

Packed rows must keep their examples apart. Measured with transformers 5 on CPU: with sdpa,
restarting ``position_ids`` alone does NOT stop attention across examples (the model builds a
cache in its forward, and transformers then ignores them for the mask); a 4D block-diagonal
causal mask does (boolean for sdpa, additive float for eager). Where the model attends each packed
example alone (``PACKED_SDPA``, model/packed_attention.py) the micro-batch is flattened as for
flash attention below, and no mask is made. flash_attention_2 takes no 4D mask,
and reads restarting ``position_ids`` as boundaries only in a batch of ONE row (see
``_is_packed_sequence`` in transformers' modeling_flash_attention_utils): so for it the whole
micro-batch is flattened into one row, padding-free, as transformers' DataCollatorWithFlattening
does, with the boundaries also given outright (``cu_seq_lens_q/k``, ``max_length_q/k``), which
the flash kernel's variable-length path takes as they are.
"""

from __future__ import annotations

from typing import Any, Callable

from qlorafx.registry import Registry

IGNORE_INDEX = -100  # label value the loss skips
# Non-padding tokens in the batch, for throughput; the trainer takes it out before the forward
# pass (counting from the attention mask would count mask entries once the mask is 4D).
NUM_TOKENS = "num_tokens"
# In a flattened micro-batch (one row holding several), each dataset row's token count, in order: the trainer
# takes it out before the forward pass and counts the evaluation's loss per dataset row with it (an evaluation
# across processes drops the rows a process repeats to even out its last batch, by dataset row).
ROW_TOKENS = "row_tokens"
# The attention implementation qlorafx.model.packed_attention registers: sdpa over each packed example alone
PACKED_SDPA = "qlorafx_packed_sdpa"

Collator = Callable[[list[dict[str, list[int]]]], dict[str, Any]]
COLLATORS: Registry[Callable[[int, str], Collator]] = Registry("collator")


def _pad(rows: list[list[int]], width: int, value: int) -> list[list[int]]:
    return [row + [value] * (width - len(row)) for row in rows]


@COLLATORS.register("pad_to_longest")
def pad_to_longest(pad_token_id: int, attn_implementation: str = "sdpa") -> Collator:
    """Right-pad each batch to its longest example; padding gets no attention."""

    def collate(examples: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        return {
            "input_ids": torch.tensor(_pad([e["input_ids"] for e in examples], width, pad_token_id)),
            "labels": torch.tensor(_pad([e["labels"] for e in examples], width, IGNORE_INDEX)),
            "attention_mask": torch.tensor(_pad([[1] * len(e["input_ids"]) for e in examples], width, 0)),
            NUM_TOKENS: sum(len(e["input_ids"]) for e in examples),
        }

    return collate


@COLLATORS.register("encoder_decoder")
def encoder_decoder(pad_token_id: int, attn_implementation: str = "sdpa") -> Collator:
    """T5-style models: encoder inputs right-padded to the longest input, decoder targets to the
    longest target (the model shifts them right into its decoder inputs)."""

    def collate(examples: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        target_width = max(len(e["labels"]) for e in examples)
        return {
            "input_ids": torch.tensor(_pad([e["input_ids"] for e in examples], width, pad_token_id)),
            "attention_mask": torch.tensor(_pad([[1] * len(e["input_ids"]) for e in examples], width, 0)),
            "labels": torch.tensor(_pad([e["labels"] for e in examples], target_width, IGNORE_INDEX)),
            NUM_TOKENS: sum(len(e["input_ids"]) + len(e["labels"]) for e in examples),
        }

    return collate


def collator_for(recipe, encoder_decoder: bool) -> str:
    """The collator a run batches with: its registry key."""
    if encoder_decoder:
        return "encoder_decoder"
    return "packed" if recipe.data.packing else "pad_to_longest"


def block_causal_mask(lengths: list[list[int]], width: int):
    """(batch, 1, width, width) bool: each token sees earlier tokens of its own example only.
    Padding after the last example sees itself alone, so no attention row is empty (an empty
    row makes sdpa return NaN)."""
    import torch

    mask = torch.zeros(len(lengths), 1, width, width, dtype=torch.bool)
    for b, row in enumerate(lengths):
        start = 0
        for length in row:
            mask[b, 0, start:start + length, start:start + length] = torch.ones(length, length, dtype=torch.bool).tril()
            start += length
        mask[b, 0, range(start, width), range(start, width)] = True
    return mask


def flattened(rows: list[dict[str, list[int]]]) -> dict[str, Any]:
    """The micro-batch's rows as ONE row with no padding, for a variable-length attention kernel:
    positions restart at each example, and the examples' boundaries are given as flash attention's
    cumulative lengths. Each example's first label is already masked by packing."""
    import torch

    lengths = [length for r in rows for length in r["lengths"]]
    bounds = [0]
    for length in lengths:
        bounds.append(bounds[-1] + length)
    cu_seq_lens = torch.tensor(bounds, dtype=torch.int32)
    return {
        "input_ids": torch.tensor([[t for r in rows for t in r["input_ids"]]]),
        "labels": torch.tensor([[t for r in rows for t in r["labels"]]]),
        "position_ids": torch.tensor([[p for length in lengths for p in range(length)]]),
        "cu_seq_lens_q": cu_seq_lens, "cu_seq_lens_k": cu_seq_lens,
        "max_length_q": max(lengths), "max_length_k": max(lengths),
        NUM_TOKENS: bounds[-1],
        ROW_TOKENS: [len(r["input_ids"]) for r in rows],
    }


@COLLATORS.register("packed")
def packed(pad_token_id: int, attn_implementation: str = "sdpa") -> Collator:
    """Rows of packed examples: positions restart per example; attention stays inside each one."""

    def collate(rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        if attn_implementation == "flash_attention_2":
            return flattened(rows)
        if attn_implementation == PACKED_SDPA:  # model/packed_attention.py: sdpa over each example alone
            batch = flattened(rows)
            # a mask of ones: transformers then builds no mask (it would make one from the restarting positions)
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
            return batch
        width = max(len(r["input_ids"]) for r in rows)
        positions = [[p for length in r["lengths"] for p in range(length)] for r in rows]
        mask = block_causal_mask([r["lengths"] for r in rows], width)
        if attn_implementation == "eager":  # eager adds the mask to the attention scores
            mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
        return {
            "input_ids": torch.tensor(_pad([r["input_ids"] for r in rows], width, pad_token_id)),
            "labels": torch.tensor(_pad([r["labels"] for r in rows], width, IGNORE_INDEX)),
            "position_ids": torch.tensor(_pad(positions, width, 0)),
            "attention_mask": mask,
            NUM_TOKENS: sum(len(r["input_ids"]) for r in rows),
        }

    return collate
