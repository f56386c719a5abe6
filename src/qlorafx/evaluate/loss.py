"""Mean loss per trained token, and perplexity, over tokenized examples (no packing: each alone)."""

from __future__ import annotations

import math

from qlorafx.data.collate import COLLATORS, NUM_TOKENS, IGNORE_INDEX
from qlorafx.data.tokenize import Example


def token_loss(model, tokenizer, examples: list[Example], batch_size: int = 8) -> dict[str, float]:
    import torch

    collate = COLLATORS.get("pad_to_longest")(tokenizer.pad_token_id)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = collate([e.as_features() for e in examples[start:start + batch_size]])
            batch.pop(NUM_TOKENS)
            labels = batch.pop("labels")
            logits = model(**{k: v.to(model.device) for k, v in batch.items()}).logits.float()
            shifted = labels[:, 1:].to(logits.device)
            total += torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), shifted.reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum").item()
            count += int((shifted != IGNORE_INDEX).sum())
    loss = total / count
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50)), "eval_tokens": count}
